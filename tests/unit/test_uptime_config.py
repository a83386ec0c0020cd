"""The uptime exporter's config is strict: every bad key is reported, before any port is bound."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import ConfigError, load_config
from common.durations import parse_duration
from exporters.uptime.config import UptimeConfig
from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "uptime.yaml"
    path.write_text(text)
    return path


def test_valid_config_applies_defaults(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, "targets:\n  - name: web\n    http: {url: 'https://app.example.com/'}\n"),
        UptimeConfig,
    )
    assert cfg.interval == 15.0
    assert cfg.targets[0].http is not None
    assert cfg.targets[0].http.expect_status == ["2xx"]


def test_every_error_is_listed_with_its_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
interval: 15
timeuot: 5s
targets:
  - name: web
    http: {url: 'ftp://app.example.com/', expect_status: [700]}
  - name: Bad Name
    tcp: {address: 'db.example.com'}
  - name: both
    http: {url: 'https://x.example.com/'}
    tcp: {address: 'x.example.com:443'}
""",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, UptimeConfig)
    problems = "\n".join(err.value.problems)
    assert "interval: Value error, must be a duration string" in problems
    assert "timeuot: unknown key" in problems
    assert (
        "targets[0].http.url: Value error, 'ftp://app.example.com/' must be an http:// or https:// URL"
        in problems
    )
    assert "targets[0].http.expect_status: Value error, 700 is not an HTTP status code" in problems
    assert "targets[1].name: Value error, 'Bad Name' must match" in problems
    assert "targets[1].tcp.address: Value error, 'db.example.com' must be host:port" in problems
    assert "targets[2]: Value error, set exactly one of 'http' or 'tcp'" in problems
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("15s", 15.0), ("1m30s", 90.0), ("2h", 7200.0), ("1d", 86400.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["15", "", "1x", "s", "0s", "1m 30s", 15])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match=r"duration|greater than zero"):
        parse_duration(bad)


def test_duplicate_names_and_timeout_longer_than_interval(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "interval: 5s\ntimeout: 10s\ntargets:\n"
        "  - {name: a, tcp: {address: 'h:1'}}\n  - {name: a, tcp: {address: 'h:2'}}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, UptimeConfig)
    assert "duplicate target names: a" in "\n".join(err.value.problems)


def test_credentials_in_url_are_refused_without_echoing_them(tmp_path: Path) -> None:
    path = write(
        tmp_path, "targets:\n  - name: a\n    http: {url: 'https://user:hunter2@x.example.com/'}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, UptimeConfig)
    assert "credentials in URLs are refused" in str(err.value)
    assert "hunter2" not in str(err.value)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporters.uptime", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_cli_exits_2_before_binding_its_port(tmp_path: Path) -> None:
    path = write(tmp_path, "targets:\n  - name: a\n    http: {url: 'nope'}\n    colour: red\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli("--config.file", str(path), "--web.listen-address", f"127.0.0.1:{port}")
    assert proc.returncode == 2
    assert "targets[0].colour: unknown key" in proc.stderr
    assert "targets[0].http.url" in proc.stderr
    # Nothing listens: the port is still free to bind.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_missing_secret_file_fails_at_start(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"targets:\n  - name: a\n    http: {{url: 'https://x.example.com/', bearer_token_file: '{tmp_path}/nope'}}\n",
    )
    proc = run_cli("--config.file", str(path), "--check-config")
    assert proc.returncode == 2
    assert (
        f"  {path}: targets[0].http.bearer_token_file: cannot read secret file {tmp_path}/nope: "
        "No such file or directory"
    ) in proc.stderr
