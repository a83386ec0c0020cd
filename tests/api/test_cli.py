"""`python -m api serve --config.file …`: config and secrets are checked before a port is bound,
every problem is listed with its key and file, and no secret is ever printed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from api.cli import main
from tests.api.conftest import MACHINE_TOKEN, SECRET, write_config


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["serve", "--config.file", str(path), "--check-config"])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_good_config_checks_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, path = write_config(tmp_path)
    code, out = _check(path, capsys)
    assert code == 0
    assert (
        "OK (auth HS256, issuer https://testproject.supabase.co/auth/v1, 1 machine token(s)" in out
    )
    assert SECRET not in out
    assert MACHINE_TOKEN not in out


def _edit(path: Path, **changes: object) -> None:
    doc = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[last] = value
    path.write_text(yaml.safe_dump(doc))


def test_every_problem_is_listed_with_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, path = write_config(tmp_path)
    _edit(
        path,
        auth__issuer="",
        auth__audiense="typo",
        alertmanager_url="alertmanager:9093",
        ack_ttl=3600,
        machine_tokens__0__role="user",
    )
    code, out = _check(path, capsys)
    assert code == 2
    for key in (
        "auth.issuer",
        "auth.audiense: unknown key",
        "alertmanager_url: Value error, must be an absolute http",
        "ack_ttl",
        "machine_tokens[0].role",
    ):
        assert key in out, key


def test_weak_secrets_are_refused_without_being_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, path = write_config(tmp_path)
    (tmp_path / "jwt_secret").write_text("short-secret\n")
    (tmp_path / "machine_token").write_text("tiny token\n")
    code, out = _check(path, capsys)
    assert code == 2
    assert "auth.jwt_secret_file: the secret in" in out
    assert "shorter than 32 bytes" in out
    assert "machine_tokens[0].token_file: the token in" in out
    assert "short-secret" not in out
    assert "tiny token" not in out


def test_machines_must_be_distinct(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, path = write_config(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["machine_tokens"].append(dict(doc["machine_tokens"][0]))
    path.write_text(yaml.safe_dump(doc))
    code, out = _check(path, capsys)
    assert code == 2
    assert "names must be unique" in out


def test_a_missing_secret_file_names_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, path = write_config(tmp_path)
    (tmp_path / "machine_token").unlink()
    code, out = _check(path, capsys)
    assert code == 2
    assert "machine_tokens[0].token_file: cannot read secret file" in out
