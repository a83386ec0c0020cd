"""Config files and the listen address fail as clear errors with exit code 2, through every
service's real command line: a key set twice, bytes that are not UTF-8 (in the config or in a
secret file), a secret file that is missing, empty or a placeholder (named with its config key),
and a listen address that is taken, not permitted or not of this host."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import Field

from common.cli import listen_address, load_for_cli
from common.config import (
    PLACEHOLDER_PREFIX,
    ConfigError,
    SecretFile,
    Strict,
    load_config,
    read_secret_files,
    secret_files,
)
from exporters.billing.cli import main as billing_main
from exporters.supabase.cli import main as supabase_main
from exporters.uptime.cli import main as uptime_main
from exporters.vercel.cli import main as vercel_main
from tests.conftest import ROOT

Main = Callable[[list[str] | None], int]
EXPORTERS: dict[str, Main] = {
    "uptime": uptime_main,
    "vercel": vercel_main,
    "supabase": supabase_main,
    "billing": billing_main,
}
SERVICES = [*EXPORTERS, "recorder"]
TRACEBACK = ("Traceback", 'File "', "Error:")  # "Error:" as in "OSError: [Errno 98] …"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def valid_config(service: str, tmp_path: Path) -> str:
    """A small valid config that reaches nothing beyond 127.0.0.1; its LAST line is a nested
    key (see `last_key`), so repeating that line sets a key twice."""
    if service == "uptime":
        return "targets:\n  - name: a\n    tcp:\n      address: '127.0.0.1:9'\n"
    if service == "vercel":
        return "projects:\n  - id: prj_a\n    name: web\n"
    if service == "supabase":
        return f"project_metrics:\n  keys_dir: '{tmp_path}'\n"
    if service == "billing":
        return f"folders:\n  - name: supabase\n    path: '{tmp_path}'\n"
    token = tmp_path / "alertmanager_token"
    token.write_text("t\n")
    return (
        f"database:\n  conninfo: 'host=127.0.0.1 port={free_port()} user=x dbname=x "
        "connect_timeout=1'\n  acquire_timeout: 200ms\n"
        f"journal:\n  directory: '{tmp_path / 'journal'}'\n"
        f"webhooks:\n  alertmanager_token_file: '{token}'\n"
    )


def last_key(service: str) -> str:
    return {
        "uptime": "targets[0].tcp.address",
        "vercel": "projects[0].name",
        "supabase": "project_metrics.keys_dir",
        "billing": "folders[0].path",
        "recorder": "webhooks.alertmanager_token_file",
    }[service]


# The dotted key of the one secret file in `secret_config`.
SECRET_KEY = {
    "uptime": "targets[0].http.bearer_token_file",
    "vercel": "api.token_file",
    "supabase": "management.token_file",
    "billing": "openai.token_file",
    "recorder": "webhooks.alertmanager_token_file",
}


def secret_config(service: str, secret: Path) -> str:
    """A config whose one secret file is `secret`."""
    return {
        "uptime": "targets:\n  - name: a\n"
        f"    http: {{url: 'http://127.0.0.1:9/', bearer_token_file: '{secret}'}}\n",
        "vercel": f"api:\n  base_url: http://127.0.0.1:9\n  token_file: '{secret}'\n"
        "projects:\n  - {id: prj_a, name: web}\n",
        "supabase": f"management:\n  base_url: http://127.0.0.1:9\n  token_file: '{secret}'\n",
        "billing": f"openai:\n  token_file: '{secret}'\n",
        "recorder": "database:\n  conninfo: 'host=127.0.0.1'\n"
        f"webhooks:\n  alertmanager_token_file: '{secret}'\n",
    }[service]


def run_service(
    service: str,
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    *,
    check: bool = True,
    recorder_command: str = "serve",
) -> tuple[int, str]:
    """Exit code and stderr: an exporter's `main` in this process, the recorder as a process
    (`python -m recorder serve …`, as it is run). With `check`, an exporter only checks its
    config (so a config that wrongly passed could not leave it serving)."""
    if service in EXPORTERS:
        code = EXPORTERS[service](args + (["--check-config"] if check else []))
        return code, capsys.readouterr().err
    proc = subprocess.run(
        [sys.executable, "-m", "recorder", recorder_command, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stderr


def assert_no_traceback(err: str) -> None:
    for sign in TRACEBACK:
        assert sign not in err, err


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A port on 127.0.0.1 another socket listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


# --- 1. a key set twice ---------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_a_key_set_twice_is_refused(
    service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = valid_config(service, tmp_path)
    lines = text.splitlines()
    path = tmp_path / f"{service}.yaml"
    path.write_text(text + lines[-1] + "\n")  # the last (nested) key again
    code, err = run_service(service, ["--config.file", str(path)], capsys)
    assert code == 2, err
    n = len(lines) + 1
    assert f"{path}: {last_key(service)} (line {n}): duplicate key" in err
    assert f"first on line {n - 1}" in err
    assert_no_traceback(err)


class _Cfg(Strict):
    a: int = 0
    m: dict[str, object] = Field(default_factory=dict)
    items: list[dict[str, object]] = Field(default_factory=list)


def test_every_key_set_twice_is_listed_with_its_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "a: 1\n"
        "m:\n"
        "  x: 1\n"
        "  y: {p: 1, p: 2}\n"  # line 4, in a flow mapping
        "  x: 2\n"  # line 5
        "items:\n"
        "  - {k: 1}\n"
        "  - k: 1\n"
        "    k: 2\n"  # line 9
        "a: 3\n"  # line 10
        "0x10: a\n"
        "16: b\n"  # line 12: the same int key, spelled differently
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, _Cfg)
    assert err.value.problems == [
        "m.y.p (line 4): duplicate key, first on line 4",
        "m.x (line 5): duplicate key, first on line 3",
        "items[1].k (line 9): duplicate key, first on line 8",
        "a (line 10): duplicate key, first on line 1",
        "16 (line 12): duplicate key, first on line 11",
    ]
    assert f"{path}: a (line 10): duplicate key" in str(err.value)


def test_a_key_over_a_merged_one_is_not_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("m: &base {x: 1, y: 2}\nitems:\n  - <<: *base\n    x: 3\n  - *base\n")
    cfg = load_config(path, _Cfg)
    assert cfg.items == [{"x": 3, "y": 2}, {"x": 1, "y": 2}]


def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path, _Cfg)


# --- 2. bytes that are not UTF-8 -----------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_a_config_that_is_not_utf8_is_refused(
    service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = valid_config(service, tmp_path)
    path = tmp_path / f"{service}.yaml"
    path.write_bytes(text.encode() + b"# caf\xe9 (latin-1)\n")
    code, err = run_service(service, ["--config.file", str(path)], capsys)
    assert code == 2, err
    offset = len(text.encode()) + 5
    line = len(text.splitlines()) + 1
    assert (
        f"{path}: not UTF-8: byte 0xe9 at offset {offset} (line {line}, column 6): "
        "invalid continuation byte"
    ) in err
    assert_no_traceback(err)


@pytest.mark.parametrize("service", SERVICES)
def test_a_secret_file_that_is_not_utf8_is_refused_without_showing_it(
    service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"hunter2\xff\xfe\n")
    path = tmp_path / f"{service}.yaml"
    path.write_text(secret_config(service, secret))
    code, err = run_service(service, ["--config.file", str(path)], capsys)
    assert code == 2, err
    assert f"invalid config {path}:\n" in err
    assert (
        f"  {path}: {SECRET_KEY[service]}: cannot read secret file {secret}: "
        "not UTF-8: byte at offset 7 (line 1, column 8)"
    ) in err
    assert "hunter2" not in err
    assert "0xff" not in err
    assert_no_traceback(err)


@pytest.mark.parametrize("service", SERVICES)
def test_a_missing_secret_file_names_the_config_the_key_and_the_file(
    service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    path = tmp_path / f"{service}.yaml"
    path.write_text(secret_config(service, missing))
    # The recorder's migrate reads its secrets too (it is run first, before serve).
    code, err = run_service(
        service, ["--config.file", str(path)], capsys, recorder_command="migrate"
    )
    assert code == 2, err
    assert err == (
        f"invalid config {path}:\n"
        f"  {path}: {SECRET_KEY[service]}: cannot read secret file {missing}: "
        "No such file or directory\n"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_a_placeholder_secret_is_refused_by_every_service(
    service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(f"{PLACEHOLDER_PREFIX}: a Vercel access token hunter2\n")
    path = tmp_path / f"{service}.yaml"
    path.write_text(secret_config(service, secret))
    code, err = run_service(service, ["--config.file", str(path)], capsys)
    assert code == 2, err
    assert (
        f"  {path}: {SECRET_KEY[service]}: secret file {secret} still holds the placeholder "
        "written by ./wsinfra init; put the real value in it"
    ) in err
    assert "hunter2" not in err
    assert_no_traceback(err)


def test_an_os_error_from_prepare_still_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\n")

    def prepare(cfg: _Cfg, secrets: dict[str, str]) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/gone/token")

    assert load_for_cli(path, _Cfg, prepare) is None
    err = capsys.readouterr().err
    assert err == (
        f"invalid config {path}:\n  {path}: cannot read /gone/token: No such file or directory\n"
    )


# --- 3. secret files: found by their SecretFile type, read at once, every problem listed ------


class _Api(Strict):
    token_file: SecretFile
    state_file: Path | None = None  # not a secret: never read as one


class _Db(Strict):
    password_file: SecretFile | None = None


class _Nested(Strict):
    api: _Api
    apis: list[_Api] = Field(default_factory=list)
    dbs: dict[str, _Db] = Field(default_factory=dict)
    db: _Db | None = None
    extra_keys: list[SecretFile] = Field(default_factory=list)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_secret_files_are_found_with_their_dotted_keys(tmp_path: Path) -> None:
    cfg = _Nested(
        api=_Api(token_file=tmp_path / "a", state_file=tmp_path / "state"),
        apis=[_Api(token_file=tmp_path / "b"), _Api(token_file=tmp_path / "c")],
        dbs={"main": _Db(password_file=tmp_path / "d"), "spare": _Db()},
        db=None,
        extra_keys=[tmp_path / "e"],
    )
    assert secret_files(cfg) == [
        ("api.token_file", tmp_path / "a"),
        ("apis[0].token_file", tmp_path / "b"),
        ("apis[1].token_file", tmp_path / "c"),
        ("dbs.main.password_file", tmp_path / "d"),
        ("extra_keys[0]", tmp_path / "e"),
    ]


def test_read_secret_files_returns_each_value_by_key(tmp_path: Path) -> None:
    cfg = _Nested(
        api=_Api(token_file=_write(tmp_path / "a", "tok-a\n")),
        db=_Db(password_file=_write(tmp_path / "d", "  pw-d  \n")),
    )
    assert read_secret_files(cfg, tmp_path / "c.yaml") == {
        "api.token_file": "tok-a",
        "db.password_file": "pw-d",
    }


def test_every_bad_secret_file_is_listed_at_once_without_any_value(tmp_path: Path) -> None:
    good = _write(tmp_path / "good", "s3cret-good\n")
    empty = _write(tmp_path / "empty", "\n  \n")
    placeholder = _write(tmp_path / "placeholder", f"{PLACEHOLDER_PREFIX}: s3cret-hint\n")
    latin1 = tmp_path / "latin1"
    latin1.write_bytes(b"s3cret-caf\xe9\n")
    directory = tmp_path / "a-directory"
    directory.mkdir()
    cfg = _Nested(
        api=_Api(token_file=tmp_path / "missing"),
        apis=[_Api(token_file=good), _Api(token_file=empty)],
        dbs={"main": _Db(password_file=placeholder), "other": _Db(password_file=latin1)},
        db=_Db(password_file=directory),
    )
    path = tmp_path / "c.yaml"
    with pytest.raises(ConfigError) as err:
        read_secret_files(cfg, path)
    assert err.value.path == path
    assert err.value.problems == [
        f"api.token_file: cannot read secret file {tmp_path / 'missing'}: "
        "No such file or directory",
        f"apis[1].token_file: secret file {empty} is empty",
        f"dbs.main.password_file: secret file {placeholder} still holds the placeholder "
        "written by ./wsinfra init; put the real value in it",
        f"dbs.other.password_file: cannot read secret file {latin1}: "
        "not UTF-8: byte at offset 10 (line 1, column 11): invalid continuation byte",
        f"db.password_file: cannot read secret file {directory}: Is a directory",
    ]
    text = str(err.value)
    assert text.startswith(f"invalid config {path}:\n  {path}: api.token_file: ")
    assert "s3cret" not in text


def test_an_unreadable_secret_file_says_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tests may run as root, who reads a mode-0 file: make the read say what it says to others.
    secret = _write(tmp_path / "secret", "s3cret\n")

    def refuse(self: Path) -> bytes:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ConfigError) as err:
        read_secret_files(_Api(token_file=secret), tmp_path / "c.yaml")
    assert err.value.problems == [
        f"token_file: cannot read secret file {secret}: Permission denied"
    ]


def test_a_value_that_only_mentions_the_placeholder_is_accepted(tmp_path: Path) -> None:
    secret = _write(tmp_path / "s", f"real-token-not-{PLACEHOLDER_PREFIX}\n")
    assert read_secret_files(_Api(token_file=secret), tmp_path / "c.yaml") == {
        "token_file": f"real-token-not-{PLACEHOLDER_PREFIX}"
    }


# --- 4. the listen address -----------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_a_port_in_use_is_a_clear_error(
    service: str, tmp_path: Path, occupied_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{service}.yaml"
    path.write_text(valid_config(service, tmp_path))
    address = f"127.0.0.1:{occupied_port}"
    code, err = run_service(
        service, ["--config.file", str(path), "--web.listen-address", address], capsys, check=False
    )
    assert code == 2, err
    assert f"error: cannot listen on {address}: address already in use" in err
    assert_no_traceback(err)


def test_an_address_not_of_this_host_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "uptime.yaml"
    path.write_text(valid_config("uptime", tmp_path))
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): no host has it, so bind() says EADDRNOTAVAIL.
    code = uptime_main(["--config.file", str(path), "--web.listen-address", "192.0.2.1:9701"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: cannot listen on 192.0.2.1:9701: cannot assign requested address" in err
    assert_no_traceback(err)


def test_a_port_not_permitted_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The tests may run as root, who may bind port 80: make the bind say what it says to others.
    async def refuse(self: web.TCPSite) -> None:
        raise OSError(errno.EACCES, "error while attempting to bind on address: permission denied")

    monkeypatch.setattr(web.TCPSite, "start", refuse)
    path = tmp_path / "vercel.yaml"
    path.write_text(valid_config("vercel", tmp_path))
    code = vercel_main(["--config.file", str(path), "--web.listen-address", ":80"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert (
        "error: cannot listen on 127.0.0.1:80: permission denied "
        "(ports below 1024 need privileges)" in err
    )
    assert_no_traceback(err)


def test_an_exporter_process_prints_one_line_not_a_traceback(
    tmp_path: Path, occupied_port: int
) -> None:
    path = tmp_path / "uptime.yaml"
    path.write_text(valid_config("uptime", tmp_path))
    address = f"127.0.0.1:{occupied_port}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporters.uptime",
            "--config.file",
            str(path),
            "--web.listen-address",
            address,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        f"error: cannot listen on {address}: address already in use "
        "(another process is listening there)"
    ]
    assert_no_traceback(proc.stderr)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:9701", ("127.0.0.1", 9701)),
        (":9701", ("127.0.0.1", 9701)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9701", ("::1", 9701)),
        ("::1:9701", ("::1", 9701)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_listen_address_parses(value: str, parsed: tuple[str, int]) -> None:
    assert listen_address(value) == parsed


@pytest.mark.parametrize(
    "value", ["9701", "host:", "host:port", "h:65536", "h:99999", "h:-1", "h:²"]
)
def test_a_bad_listen_address_is_a_usage_error(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "uptime.yaml"
    path.write_text(valid_config("uptime", tmp_path))
    with pytest.raises(SystemExit) as exit_:
        uptime_main(["--config.file", str(path), "--web.listen-address", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--web.listen-address" in err
    assert "must be host:port" in err


def test_a_secret_pasted_in_place_of_its_path_is_never_echoed(tmp_path: Path) -> None:
    cfg = _Nested(api=_Api(token_file=Path("sbp_0123456789abcdefPASTEDSECRET")))
    with pytest.raises(ConfigError) as exc:
        read_secret_files(cfg, tmp_path / "c.yaml")
    assert "PASTEDSECRET" not in str(exc.value)
    assert "api.token_file: names no file (its value is not shown" in str(exc.value)
