"""`./wsinfra init` and `./wsinfra check`: config/local/ with only the parts asked for, every
secret an example config names has its example, and check says what is missing, one line each."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from common.config import PLACEHOLDER_PREFIX
from compose import local_config
from compose import stack as stack_cli
from tests.conftest import ROOT

EXAMPLE = ROOT / "config" / "example"
SLACK = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "local"
    monkeypatch.setenv("WSINFRA_CONFIG_DIR", str(path))
    monkeypatch.setenv("WSINFRA_RUN_DIR", str(tmp_path / "run"))
    return path


def test_every_secret_an_example_config_names_has_its_example_and_its_help() -> None:
    named = set()
    for config in EXAMPLE.glob("*.yaml"):  # comments too: an optional key shown commented out
        named |= set(re.findall(r"config/local/secrets/([A-Za-z0-9_]+)", config.read_text()))
    named |= set(local_config.STACK_SECRETS)
    assert {"vercel_billing_token", "openai_admin_key", "slack_webhook_url"} <= named
    missing = sorted(n for n in named if not (EXAMPLE / "secrets" / f"{n}.example").is_file())
    assert not missing, f"config/example/secrets/ lacks {missing}"
    assert not sorted(named - set(local_config.SECRET_HELP)), "no help text for them"


def test_init_writes_uptime_and_slack_only_by_default(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack_cli.main(["init"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in local.iterdir()) == ["secrets", "uptime.yaml"]
    assert [p.name for p in (local / "secrets").iterdir()] == ["slack_webhook_url"]
    slack = local / "secrets" / "slack_webhook_url"
    assert slack.read_text().startswith(PLACEHOLDER_PREFIX)
    assert stat.S_IMODE(slack.stat().st_mode) == 0o600
    assert stat.S_IMODE((local / "secrets").stat().st_mode) == 0o700
    # The next steps name the file to edit, the secret to fill, check and up.
    assert f"$EDITOR {local / 'uptime.yaml'}" in out
    assert f"{slack}: the Slack incoming-webhook URL" in out
    assert "./wsinfra check" in out
    assert "./wsinfra up" in out


def test_init_with_parts_writes_their_configs_and_secrets_and_keeps_what_exists(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack_cli.main(["init", "--with", "billing,pagerduty,vercel"]) == 0
    names = {p.name for p in (local / "secrets").iterdir()}
    assert {"vercel_billing_token", "openai_admin_key", "pagerduty_routing_key"} <= names
    assert {"vercel_api_token", "vercel_logs_drain_secret"} <= names
    assert "supabase_access_token" not in names  # supabase was not asked for
    assert "recorder_db_password" not in names  # commented out in the example: optional
    assert (local / "invoices" / "supabase").is_dir()
    billing = (local / "billing.yaml").read_text()
    assert f"token_file: {local}/secrets/vercel_billing_token" in billing
    (local / "secrets" / "slack_webhook_url").write_text(SLACK + "\n")
    capsys.readouterr()
    assert stack_cli.main(["init", "--with", "billing"]) == 0
    assert (local / "secrets" / "slack_webhook_url").read_text() == SLACK + "\n"
    assert f"kept   {local / 'secrets' / 'slack_webhook_url'} (exists)" in capsys.readouterr().out


def test_init_refuses_an_unknown_part(local: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stack_cli.main(["init", "--with", "vercel,datadog"]) == 2
    assert "unknown part datadog; parts: uptime, slack" in capsys.readouterr().err
    assert not local.exists()


def test_check_lists_each_placeholder_with_its_file_and_key_then_passes_when_filled(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack_cli.main(["init", "--with", "billing"]) == 0
    capsys.readouterr()
    assert stack_cli.main(["check"]) == 2
    lines = capsys.readouterr().out.splitlines()
    slack = local / "secrets" / "slack_webhook_url"
    assert f"{slack}: still the placeholder: put the Slack incoming-webhook URL" in lines[0]
    billing = [ln for ln in lines if "billing.yaml" in ln]
    assert any("vercel.token_file" in ln and "vercel_billing_token" in ln for ln in billing), lines
    assert any("openai.token_file" in ln and "openai_admin_key" in ln for ln in billing), lines
    assert len(lines) == 3, lines  # one line per problem
    assert all(PLACEHOLDER_PREFIX not in ln.split(":", 1)[0] for ln in lines)

    slack.write_text(SLACK + "\n")
    (local / "billing.yaml").unlink()
    assert stack_cli.main(["check"]) == 0
    assert "ready:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("slack_webhook_url", "hooks.slack.com/services/x", "not a URL"),
        ("slack_webhook_url", "", "empty"),
        ("pagerduty_routing_key", "short", "not 32 letters and digits"),
        ("vercel_webhook_secret", f"{PLACEHOLDER_PREFIX}: x", "still the placeholder"),
    ],
)
def test_check_names_a_wrong_stack_secret_without_showing_it(
    local: Path, name: str, value: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack_cli.main(["init"]) == 0
    (local / "secrets" / "slack_webhook_url").write_text(SLACK + "\n")
    (local / "secrets" / name).write_text(value + "\n")
    capsys.readouterr()
    assert stack_cli.main(["check"]) == 2
    out = capsys.readouterr().out
    assert f"{local / 'secrets' / name}: {problem}" in out
    if value:
        assert value not in out


def test_check_without_config_says_so(local: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stack_cli.main(["check"]) == 2
    assert f"{local / 'uptime.yaml'}: missing (./wsinfra init writes" in capsys.readouterr().out


def test_real_mode_up_refuses_placeholders_before_starting_anything(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack_cli.main(["init"]) == 0
    capsys.readouterr()
    assert stack_cli.main(["up"]) == 1
    err = capsys.readouterr().err
    assert "real mode cannot start:" in err
    assert "slack_webhook_url: still the placeholder" in err
    assert not (local.parent / "run" / "pids").exists()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://hooks.slack.com/services/T0/B0/SECRETTOKEN", "not https"),
        ("\ufeffhttps://hooks.slack.com/services/T0/B0/SECRETTOKEN", "byte-order mark"),
        ("http://127.0.0.1:9/services/T0/B0/SECRETTOKEN", None),  # a local stand-in
        ("http://[::1]:9/services/T0/B0/SECRETTOKEN", None),
        ("https://hooks.slack.com/services/T0/B0/SECRETTOKEN\r\n  ", None),
    ],
)
def test_the_slack_url_is_https_unless_local_and_a_bom_is_named(
    tmp_path: Path, value: str, problem: str | None
) -> None:
    # The URL is the credential: sent over plain http it is readable on the way.
    path = tmp_path / "slack_webhook_url"
    path.write_text(value)
    found = local_config.secret_problem(path, required=True)
    assert (found is None) if problem is None else (problem in (found or "")), found
    assert "SECRETTOKEN" not in (found or "")


def test_init_into_a_file_or_nowhere_says_so_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("")
    for where in (tmp_path / "afile", Path("/proc/no-such-dir")):
        monkeypatch.setenv("WSINFRA_CONFIG_DIR", str(where))
        assert stack_cli.main(["init"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"./wsinfra init: cannot write {where}"), err
        assert "Traceback" not in err


def test_check_when_the_config_folder_cannot_be_read_is_one_line_not_a_traceback(
    local: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As root (CI) a mode-000 folder is still readable, so the error is raised here.
    def denied(_: object) -> None:
        raise PermissionError(13, "Permission denied", str(local / "uptime.yaml"))

    monkeypatch.setattr(local_config, "check", denied)
    assert stack_cli.main(["check"]) == 2
    assert capsys.readouterr().out == f"{local / 'uptime.yaml'}: cannot read: Permission denied\n"

    def unreadable(path: Path) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(local_config, "read_secret_file", unreadable)
    secret = local / "secrets" / "slack_webhook_url"
    assert local_config.secret_problem(secret, True) == f"{secret}: cannot read: Permission denied"


@pytest.mark.parametrize("folder", ["has #hash", "has: colon", "has,comma}brace"])
def test_init_into_a_folder_yaml_would_misread_still_names_its_secret_files(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    folder: str,
) -> None:
    # Written plain, `token_file: /x/has #hash/secrets/t` reads as `/x/has`: quoted instead.
    local = tmp_path / folder
    monkeypatch.setenv("WSINFRA_CONFIG_DIR", str(local))
    monkeypatch.setenv("WSINFRA_RUN_DIR", str(tmp_path / "run"))
    assert stack_cli.main(["init", "--with", "vercel"]) == 0
    capsys.readouterr()
    assert stack_cli.main(["check"]) == 2
    lines = capsys.readouterr().out.splitlines()
    drains = [ln for ln in lines if "drains.logs.secret_file" in ln]
    assert drains, lines
    assert f"{local / 'secrets' / 'vercel_logs_drain_secret'} still holds" in drains[0]


def test_init_keeps_a_dangling_symlink_instead_of_writing_through_it(
    local: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (local / "secrets").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    (local / "secrets" / "slack_webhook_url").symlink_to(elsewhere)
    assert stack_cli.main(["init"]) == 0
    assert not elsewhere.exists()
    capsys.readouterr()
    assert stack_cli.main(["check"]) == 2
    assert "slack_webhook_url: missing" in capsys.readouterr().out


def test_a_yaml_error_is_one_line_with_its_position_and_without_the_source(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack_cli.main(["init"]) == 0
    (local / "secrets" / "slack_webhook_url").write_text(SLACK + "\n")
    (local / "uptime.yaml").write_text("targets: [\n  typed-here")
    capsys.readouterr()
    assert stack_cli.main(["check"]) == 2
    out = capsys.readouterr().out
    assert out == (
        f"{local / 'uptime.yaml'}: not valid YAML: while parsing a flow sequence (line 1, "
        "column 10): expected ',' or ']', but got '<stream end>' (line 2, column 13)\n"
    )


def test_init_with_api_writes_its_config_and_check_runs_the_apis_own_check(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack_cli.main(["init", "--with", "api"]) == 0
    names = {p.name for p in (local / "secrets").iterdir()}
    assert {"api_jwt_secret", "api_db_password", "api_grafana_token"} <= names
    capsys.readouterr()
    assert stack_cli.main(["check"]) == 2
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "api.yaml" in ln]
    assert any("auth.jwt_secret_file" in ln and "api_jwt_secret" in ln for ln in lines), lines
