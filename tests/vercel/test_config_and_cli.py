"""Config errors listed at once with their keys; secrets read before a port is bound; output valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common.config import ConfigError, load_config, secret_files
from exporters.vercel.app import VercelExporter
from exporters.vercel.cli import main
from exporters.vercel.config import SECRET_NAMES, VercelConfig
from fakes.vercel_drains import log_records, otlp_json, speed_insights_records
from tests.conftest import ROOT
from tests.vercel.helpers import PROJECT_ID, SECRETS, TOKEN, load, render, write_config


def test_every_problem_is_listed_with_its_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "api": {"base_url": "ftp://x", "refresh_interval": 30, "colour": "red"},
                "projects": [{"id": "prj_1", "name": "Web Site"}, {"id": "prj_1", "name": "b"}],
                "drains": {"logs": {"secret_file": "/x", "sample_rate": 0}, "routes": ["no-slash"]},
            }
        )
    )
    with pytest.raises(ConfigError) as err:
        load_config(bad, VercelConfig)
    text = str(err.value)
    for key in (
        "api.base_url",
        "api.refresh_interval",
        "api.colour: unknown key",
        "projects[0].name",
        "drains.logs.sample_rate",
        "drains.routes",
    ):
        assert key in text, text


def test_cli_exits_2_on_a_missing_secret_without_printing_any(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    (tmp_path / "secrets" / "traces").unlink()
    (tmp_path / "secrets" / "logs").write_text("\n")
    assert main(["--config.file", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"invalid config {path}:\n"
        f"  {path}: drains.logs.secret_file: secret file {tmp_path}/secrets/logs is empty\n"
        f"  {path}: drains.traces.secret_file: cannot read secret file "
        f"{tmp_path}/secrets/traces: No such file or directory\n"
    )
    assert TOKEN not in err


def test_every_secret_key_has_a_name(tmp_path: Path) -> None:
    """The exporter knows its secrets by name (SECRET_NAMES): a new SecretFile key needs one."""
    path = write_config(tmp_path)
    cfg, secrets = load(path)
    assert {key for key, _ in secret_files(cfg)} == set(SECRET_NAMES)
    assert secrets == {"token": TOKEN, **SECRETS}


def test_check_config_summarises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config.file", str(write_config(tmp_path)), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert "OK (1 projects, deployments polling on, drains: logs, traces, speed_insights)" in out


def test_without_a_token_polling_is_off_and_the_exporter_is_up(tmp_path: Path) -> None:
    cfg, secrets = load(write_config(tmp_path, token=False))
    text = render(VercelExporter(cfg, secrets)).decode()
    assert "vercel_up 1.0" in text
    assert "vercel_api_polling_enabled 0.0" in text
    assert "vercel_deployments_total" not in text


@pytest.mark.integration
def test_output_passes_promtool_check_metrics(tmp_path: Path, promtool: str) -> None:
    cfg, secrets = load(write_config(tmp_path))
    e = VercelExporter(cfg, secrets)
    for drain, batch in (
        (e.drains.logs, log_records(200, PROJECT_ID)),
        (e.drains.speed_insights, speed_insights_records(200, PROJECT_ID)),
    ):
        drain.apply(drain.aggregate(batch, 2.0))  # type: ignore[attr-defined]
    from exporters.vercel.trace_drain import resources_from_json

    e.drains.traces.apply(
        e.drains.traces.aggregate(resources_from_json(otlp_json(50, PROJECT_ID)), 1.0)
    )
    text = render(e)
    res = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    assert b"vercel_request_duration_seconds_bucket" in text
    for secret in (*SECRETS.values(), TOKEN):
        assert secret.encode() not in text


@pytest.mark.integration
def test_serves_metrics_as_a_process(tmp_path: Path) -> None:
    from compose.processes import free_port, spawn, wait_ready

    port = free_port()
    proc = spawn(
        [
            sys.executable,
            "-m",
            "exporters.vercel",
            "--config.file",
            str(write_config(tmp_path, token=False)),
            "--web.listen-address",
            f"127.0.0.1:{port}",
        ],
        tmp_path / "log",
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", timeout=20, proc=proc)
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert b"vercel_up 1.0" in resp.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert (ROOT / "exporters" / "vercel").is_dir()


def test_the_example_config_is_valid() -> None:
    cfg = load_config(ROOT / "config" / "example" / "vercel.yaml", VercelConfig)
    assert cfg.api.token_file is not None
    assert cfg.drains.logs is not None
