"""The exporter's command line checks every secret file before it serves: a bad one exits 2
naming the config, the key and the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

PASSWORD = "db-SECRET-password"


def test_missing_secret_files_exit_2_naming_the_config_each_key_and_file(tmp_path: Path) -> None:
    (tmp_path / "pw_a").write_text(f"{PASSWORD}\n")
    path = tmp_path / "supabase.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "databases": [
                    {"name": "a", "conninfo": "host=x", "password_file": str(tmp_path / "pw_a")},
                    {"name": "b", "conninfo": "host=x", "password_file": str(tmp_path / "pw_b")},
                ],
                "management": {
                    "base_url": "http://127.0.0.1:9",
                    "token_file": str(tmp_path / "token"),
                },
            }
        )
    )
    res = subprocess.run(
        [sys.executable, "-m", "exporters.supabase", "--config.file", str(path), "--check-config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr == (
        f"invalid config {path}:\n"
        f"  {path}: databases[1].password_file: cannot read secret file {tmp_path}/pw_b: "
        "No such file or directory\n"
        f"  {path}: management.token_file: cannot read secret file {tmp_path}/token: "
        "No such file or directory\n"
    )
    assert PASSWORD not in res.stderr
