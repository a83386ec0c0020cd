"""Supabase's own metrics endpoint re-exposed: keys stay in the exporter, projects via /sd."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from exporters.supabase.app import SupabaseExporter, make_app
from exporters.supabase.config import SupabaseConfig
from fakes.supabase_metrics import make_app as fake_metrics

KEY = "sb_secret_SUPERSECRET_123"


async def client_for(
    aiohttp_client: Any,
    aiohttp_server: Any,
    tmp_path: Path,
    keys: dict[str, str],
    files: dict[str, str],
) -> TestClient:
    upstream = await aiohttp_server(fake_metrics(keys))
    kdir = tmp_path / "keys"
    kdir.mkdir()
    for ref, key in files.items():
        (kdir / ref).write_text(key + "\n")
    cfg = SupabaseConfig.model_validate(
        {
            "project_metrics": {
                "url_template": str(upstream.make_url("")).rstrip("/")
                + "/{ref}/customer/v1/privileged/metrics",
                "keys_dir": str(kdir),
                "projects": ["projone", "projtwo"],
            }
        }
    )
    c: TestClient = await aiohttp_client(make_app(SupabaseExporter(cfg)))
    return c


async def test_probe_passes_supabase_metrics_through(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    c = await client_for(
        aiohttp_client, aiohttp_server, tmp_path, {"projone": KEY}, {"projone": KEY}
    )
    resp = await c.get("/probe", params={"project": "projone"})
    assert resp.status == 200
    text = await resp.text()
    assert (
        'pg_up{supabase_project_ref="projone",supabase_identifier="projone",service_type="postgresql"} 1'
        in text
    )
    assert 'supabase_project_metrics_up{reason="ok"} 1' in text
    assert KEY not in text


async def test_sd_lists_projects_with_keys_and_no_credentials(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    c = await client_for(
        aiohttp_client, aiohttp_server, tmp_path, {"projone": KEY}, {"projone": KEY}
    )
    doc = await (await c.get("/sd")).json()
    assert doc == [
        {
            "targets": [f"{c.host}:{c.port}"],
            "labels": {"__param_project": "projone", "project": "projone"},
        }
    ]
    assert KEY not in str(doc)


async def test_a_wrong_key_or_unknown_project_says_so(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    c = await client_for(
        aiohttp_client, aiohttp_server, tmp_path, {"projone": KEY}, {"projone": "wrong"}
    )
    resp = await c.get("/probe", params={"project": "projone"})
    assert resp.status == 200
    assert 'supabase_project_metrics_up{reason="auth"} 0' in await resp.text()
    assert (await c.get("/probe", params={"project": "projtwo"})).status == 404  # no key file
    assert (await c.get("/probe", params={"project": "../etc"})).status == 400
    assert KEY not in caplog.text
    assert "wrong" not in caplog.text


def test_config_refuses_a_template_without_ref(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="containing"):
        SupabaseConfig.model_validate(
            {
                "project_metrics": {
                    "url_template": "https://x.supabase.co/m",
                    "keys_dir": str(tmp_path),
                }
            }
        )


@pytest.mark.integration
async def test_probe_output_passes_promtool(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, promtool: str
) -> None:
    import subprocess

    c = await client_for(
        aiohttp_client, aiohttp_server, tmp_path, {"projone": KEY}, {"projone": KEY}
    )
    body = await (await c.get("/probe", params={"project": "projone"})).read()
    res = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()


def test_sd_offers_projects_the_management_api_discovered_when_they_have_a_key(
    tmp_path: Path,
) -> None:
    from exporters.supabase.config import ProjectMetrics
    from exporters.supabase.project_metrics import ProjectMetricsProxy

    (tmp_path / "projone").write_text(KEY)
    (tmp_path / "found").write_text(KEY)
    cfg = ProjectMetrics(keys_dir=tmp_path, projects=["projone"])
    known = ["found", "nokeyfile"]
    proxy = ProjectMetricsProxy(cfg, lambda: known)
    assert proxy.projects() == ["found", "projone"]
    known.remove("found")  # paused or gone: the next /sd drops it
    assert proxy.projects() == ["projone"]
