"""`python -m backups backup|drill` as a person runs them from a runbook: exit codes, JSON out,
errors naming the file and key, no secret on the command line or in the output."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backups", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _config(path: Path, record: str, source: str, location: Path, password_file: Path) -> Path:
    doc = {
        "record": {"conninfo": record},
        "location": str(location),
        "targets": [
            {
                "name": "app",
                # The password file is read (and handed to the tools in a passfile); the machine's
                # server trusts, so any content works, and it must never show up anywhere.
                "source": {"conninfo": source, "password_file": str(password_file)},
                "drill": {"smoke_queries": ["SELECT 1 FROM customers LIMIT 1"]},
            }
        ],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_backup_and_drill_from_the_command_line(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    secret = shared_tmp / "pw"
    secret.write_text("s3cret-never-shown\n")
    cfg = _config(shared_tmp / "b.yaml", migrated_dsn, source_dsn, shared_tmp / "dumps", secret)
    backup = _run("backup", "--config.file", str(cfg), "--target", "app")
    assert backup.returncode == 0, backup.stderr
    row = json.loads(backup.stdout)
    assert row["backup_status"] == "completed"
    assert "manifest" not in row
    drill = _run("drill", "--config.file", str(cfg), "--target", "app")
    assert drill.returncode == 0, drill.stderr
    out = json.loads(drill.stdout)
    assert out["passed"] is True
    assert out["rto_seconds"] > 0
    for text in (backup.stdout, backup.stderr, drill.stdout, drill.stderr):
        assert "s3cret" not in text
    # What the worker writes is its user's only.
    location = Path(row["backup_location"])
    for path in (location, location / "manifest.json", location / "dump"):
        assert path.stat().st_mode & 0o077 == 0, path
    # A drill of a backup that is not this target's dump is refused before anything is recorded.
    for bad, why in ((str(uuid.uuid4()), "no such backup"),):
        res = _run("drill", "--config.file", str(cfg), "--target", "app", "--backup-id", bad)
        assert res.returncode == 2
        assert why in res.stderr
    with psycopg.connect(migrated_dsn) as conn:
        drills = conn.execute("SELECT count(*) FROM restore_drills").fetchone()
    assert drills == (1,)  # the passed one only


def test_bad_config_and_unknown_target_exit_2(shared_tmp: Path) -> None:
    bad = shared_tmp / "bad.yaml"
    bad.write_text("record: {conninfo: 'host=x password=hunter2'}\nlocation: /tmp\n")
    res = _run("backup", "--config.file", str(bad), "--target", "app")
    assert res.returncode == 2
    assert "record.conninfo" in res.stderr
    assert "hunter2" not in res.stderr
    ok = shared_tmp / "ok.yaml"
    ok.write_text("record: {conninfo: 'host=127.0.0.1'}\nlocation: /tmp\n")
    res = _run("drill", "--config.file", str(ok), "--target", "nope")
    assert res.returncode == 2
    assert "no target named 'nope'" in res.stderr
