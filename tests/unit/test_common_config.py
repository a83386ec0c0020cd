"""Config files and the listen address fail as clear errors with exit code 2, through every
service's real command line: a key set twice, bytes that are not UTF-8 (in the config or in a
secret file), and a listen address that is taken, not permitted or not of this host."""

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

from common.cli import listen_address
from common.config import ConfigError, Strict, load_config
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
    service: str, args: list[str], capsys: pytest.CaptureFixture[str], *, check: bool = True
) -> tuple[int, str]:
    """Exit code and stderr: an exporter's `main` in this process, the recorder as a process
    (`python -m recorder serve …`, as it is run). With `check`, an exporter only checks its
    config (so a config that wrongly passed could not leave it serving)."""
    if service in EXPORTERS:
        code = EXPORTERS[service](args + (["--check-config"] if check else []))
        return code, capsys.readouterr().err
    proc = subprocess.run(
        [sys.executable, "-m", "recorder", "serve", *args],
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
    assert f"invalid config {path}: " in err
    assert f"secret file: {secret}: not UTF-8: byte at offset 7 (line 1, column 8)" in err
    assert "hunter2" not in err
    assert "0xff" not in err
    assert_no_traceback(err)


def test_a_missing_secret_file_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "vercel.yaml"
    path.write_text(secret_config("vercel", tmp_path / "nope"))
    assert vercel_main(["--config.file", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert f"cannot read secret file: {tmp_path / 'nope'}: No such file or directory" in err


# --- 3. the listen address -----------------------------------------------------------------


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
