"""Load a YAML file into a strict pydantic model and report every problem with its key."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

M = TypeVar("M", bound=BaseModel)

# What `./wsinfra init` writes into each secret file it creates; a secret that starts with it
# was never filled in, and every service refuses it.
PLACEHOLDER_PREFIX = "REPLACE-ME"


@dataclass(frozen=True, slots=True)
class _Secret:
    """Marks a Path field as naming a secret file (see SecretFile)."""


# A config key naming a file that holds a secret. read_secret_files reads every one at start,
# so a missing, unreadable, empty or placeholder secret fails before a service does anything.
SecretFile = Annotated[Path, _Secret()]


class Strict(BaseModel):
    """Base of every config model: an unknown key is an error (a typo must not pass silently)
    and a loaded config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(Exception):
    """A config file that cannot be used; `problems` lists one line per bad key."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  {path}: {p}" for p in problems)
        super().__init__(f"invalid config {path}:\n{lines}")


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that sets one key twice; `problems` has one line per repeat."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping setting the same key twice (safe_load keeps the last one
    silently). A key given next to a merge (`<<: *base`) overrides the merged one, as YAML says."""

    def construct_document(self, node: yaml.Node) -> Any:
        problems = _duplicate_keys(self, node)
        if problems:
            raise DuplicateKeyError(problems)
        return super().construct_document(node)


_MERGE = "tag:yaml.org,2002:merge"


def _duplicate_keys(loader: yaml.SafeLoader, root: yaml.Node) -> list[str]:
    """Walk the node tree (iteratively; each node once, so aliases cost nothing more) and list
    every key a mapping sets twice, as `dotted.key.path (line N): duplicate key`."""
    found: list[tuple[int, str]] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first: dict[object, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    stack.append((value_node, path))  # its keys become this mapping's keys
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # SafeLoader refuses an unhashable key itself
                name = str(key_node.value)
                child = f"{path}.{name}" if path else name
                line = key_node.start_mark.line + 1
                # Compare constructed keys: `1` and `0x1`, `on` and `true` are the same key.
                key = loader.construct_object(key_node)
                try:
                    earlier = first.get(key)
                    if earlier is None:
                        first[key] = line
                except TypeError:  # not hashable: SafeLoader refuses it itself
                    continue
                if earlier is not None:
                    found.append(
                        (line, f"{child} (line {line}): duplicate key, first on line {earlier}")
                    )
                stack.append((value_node, child))
    return [p for _, p in sorted(found)]


def load_config(path: Path, model: type[M]) -> M:
    """Parse `path` as YAML into `model`; raise ConfigError listing every error at once."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, [f"cannot read file: {exc.strerror}"]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [_not_utf8(data, exc, show_byte=True)]) from None
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as exc:
        raise ConfigError(path, exc.problems) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"not valid YAML: {exc}"]) from exc
    except RecursionError:
        raise ConfigError(path, ["not valid YAML: nested too deeply"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, ["(top level): must be a mapping"])
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            problems.append(f"{_key(tuple(err['loc']))}: {msg}")
        raise ConfigError(path, problems) from None


def _not_utf8(data: bytes, exc: UnicodeDecodeError, *, show_byte: bool) -> str:
    """Where the first byte that is not UTF-8 is: offset, line and column (1-based)."""
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    byte = f" 0x{data[exc.start]:02x}" if show_byte else ""
    return (
        f"not UTF-8: byte{byte} at offset {exc.start} (line {line}, column {column}): {exc.reason}"
    )


def read_secret_file(path: Path) -> str:
    """Read a secret from a file, stripping the trailing newline editors add. Any failure is an
    OSError naming the file (bytes that are not UTF-8 too, without showing them)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise OSError(errno.EILSEQ, _not_utf8(data, exc, show_byte=False), str(path)) from None


def describe_os_error(exc: OSError) -> str:
    """`file: reason` for an OSError from reading a file (`reason` alone when it names none)."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


def is_secret_field(info: FieldInfo) -> bool:
    """Whether a model field is a SecretFile (also inside Optional, list or dict)."""
    return any(isinstance(m, _Secret) for m in info.metadata) or _mentions_secret(info.annotation)


def _mentions_secret(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated and any(
        isinstance(m, _Secret) for m in annotation.__metadata__
    ):
        return True
    return any(_mentions_secret(arg) for arg in get_args(annotation))


def secret_files(cfg: BaseModel) -> list[tuple[str, Path]]:
    """(dotted key, file) of every SecretFile set in a validated model, nested models, lists
    and dicts included, in the order of the model's fields; unset (None) ones are skipped."""
    found: list[tuple[str, Path]] = []
    _walk(cfg, (), False, found)
    return found


def _walk(
    value: object, loc: tuple[int | str, ...], secret: bool, found: list[tuple[str, Path]]
) -> None:
    if isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            _walk(getattr(value, name), (*loc, name), is_secret_field(info), found)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _walk(item, (*loc, i), secret, found)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, (*loc, str(key)), secret, found)
    elif secret and isinstance(value, Path):
        found.append((_key(loc), value))


def read_secret_files(cfg: BaseModel, path: Path) -> dict[str, str]:
    """Read every secret file the config at `path` names: {dotted key: value}. Any file that
    cannot be read, is empty or still holds the placeholder is a ConfigError listing every bad
    one with its key and file. No message holds a value, and neither may the caller's logs."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for key, file in secret_files(cfg):
        try:
            value = read_secret_file(file)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and "/" not in str(file):
                # A bare word that names no file is most likely the secret pasted in place of
                # its path: never echo it.
                problems.append(
                    f"{key}: names no file (its value is not shown: if it is the secret itself,"
                    " put the secret in a file and give that file's path here)"
                )
                continue
            problems.append(f"{key}: cannot read secret file {file}: {exc.strerror or exc}")
            continue
        if not value:
            problems.append(f"{key}: secret file {file} is empty")
        elif value.startswith(PLACEHOLDER_PREFIX):
            problems.append(
                f"{key}: secret file {file} still holds the placeholder written by "
                "./wsinfra init; put the real value in it"
            )
        else:
            values[key] = value
    if problems:
        raise ConfigError(path, problems)
    return values
