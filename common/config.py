"""Load a YAML file into a strict pydantic model and report every problem with its key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


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


def load_config(path: Path, model: type[M]) -> M:
    """Parse `path` as YAML into `model`; raise ConfigError listing every error at once."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, [f"cannot read file: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"not valid YAML: {exc}"]) from exc
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


def read_secret_file(path: Path) -> str:
    """Read a secret from a file, stripping the trailing newline editors add."""
    return path.read_text(encoding="utf-8").strip()


def _check_conninfo(value: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(value)
    except Exception as exc:  # psycopg.ProgrammingError; its message never holds a password
        raise ValueError(f"not a libpq conninfo: {type(exc).__name__}") from None
    if "password" in parts:
        raise ValueError("passwords in conninfo are refused: use password_file")
    return value


# A libpq conninfo ("host=… dbname=… user=…") that carries no password (that lives in a file).
Conninfo = Annotated[str, AfterValidator(_check_conninfo)]
