"""The recorder's command line: bad config and an unreachable database fail clearly, secret-free."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recorder", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bad_config_exits_2_with_file_and_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "r.yaml"
    cfg.write_text("database:\n  conninfo: x\n  pool_max: 0\n  colour: red\nwebhooks: {}\n")
    res = run("serve", "--config.file", str(cfg))
    assert res.returncode == 2
    for expected in (
        str(cfg),
        "database.pool_max",
        "database.colour: unknown key",
        "webhooks.alertmanager_token_file",
    ):
        assert expected in res.stderr


def test_missing_secret_file_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "r.yaml"
    cfg.write_text(
        f"database:\n  conninfo: 'host=127.0.0.1'\nwebhooks:\n  alertmanager_token_file: {tmp_path}/none\n"
    )
    res = run("migrate", "--config.file", str(cfg))
    assert res.returncode == 2
    assert res.stderr == (
        f"invalid config {cfg}:\n  {cfg}: webhooks.alertmanager_token_file: "
        f"cannot read secret file {tmp_path}/none: No such file or directory\n"
    )


def test_every_secret_file_is_checked_at_start_and_listed_at_once(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t\n")
    (tmp_path / "github").write_text("\n")
    cfg = tmp_path / "r.yaml"
    cfg.write_text(
        f"database:\n  conninfo: 'host=127.0.0.1'\n  password_file: {tmp_path}/pw\n"
        f"webhooks:\n  alertmanager_token_file: {tmp_path}/token\n"
        f"  vercel_secret_file: {tmp_path}/vercel\n  github_secret_file: {tmp_path}/github\n"
    )
    res = run("serve", "--config.file", str(cfg))
    assert res.returncode == 2
    assert res.stderr.splitlines()[1:] == [
        f"  {cfg}: database.password_file: cannot read secret file {tmp_path}/pw: "
        "No such file or directory",
        f"  {cfg}: webhooks.vercel_secret_file: cannot read secret file {tmp_path}/vercel: "
        "No such file or directory",
        f"  {cfg}: webhooks.github_secret_file: secret file {tmp_path}/github is empty",
    ]


def test_unreachable_database_is_a_clear_error_without_the_password(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    (tmp_path / "token").write_text("t\n")
    (tmp_path / "pw").write_text("hunter2-db-password\n")
    cfg = tmp_path / "r.yaml"
    cfg.write_text(
        f"database:\n  conninfo: 'host=127.0.0.1 port={unused_tcp_port} user=postgres dbname=x connect_timeout=2'\n"
        f"  password_file: {tmp_path}/pw\nwebhooks:\n  alertmanager_token_file: {tmp_path}/token\n"
    )
    res = run("migrate", "--config.file", str(cfg))
    assert res.returncode == 1
    assert "cannot connect to the database" in res.stderr
    assert "hunter2" not in res.stderr + res.stdout


def test_missing_runbooks_directory_exits_2(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t\n")
    cfg = tmp_path / "r.yaml"
    cfg.write_text(
        "database:\n  conninfo: 'host=127.0.0.1'\n"
        f"webhooks:\n  alertmanager_token_file: {tmp_path}/token\n"
        f"runbooks:\n  directory: {tmp_path}/no-runbooks\n"
    )
    res = run("serve", "--config.file", str(cfg))
    assert res.returncode == 2
    assert f"{cfg}: runbooks.directory: {tmp_path}/no-runbooks is not a directory" in res.stderr
