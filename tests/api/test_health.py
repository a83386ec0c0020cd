"""GET /api/infrastructure/health on a real Prometheus (scraping what the test sets) and a real
PostgreSQL: statuses follow the rules as the data changes, the spec's shape, per-role answers,
and Prometheus down is a 503 with a reason."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api import health as health_module
from api.health import HEALTH
from tests.api.conftest import as_user, start_client, write_config
from tests.api.scraped_prometheus import ScrapedPrometheus, scraped_prometheus

pytestmark = pytest.mark.integration

HEALTHY = """
vercel_up 1
supabase_up 1
project:vercel_requests:rate5m{project="web"} 100
project:vercel_request_errors:rate5m{project="web"} 2
project_kind:vercel_request_duration_seconds:p95_rate5m{project="web",route_kind="page"} 0.4
project_region:vercel_requests:rate5m{project="web",region="fra1"} 100
project_region:vercel_request_errors:rate5m{project="web",region="fra1"} 2
project_region_kind:vercel_request_duration_seconds:p95_rate5m{project="web",region="fra1",route_kind="page"} 0.4
uptime_target_info{job="uptime",target="pooler",service="db",probe="tcp",endpoint="tcp://db:6543"} 1
uptime_probe_success{job="uptime",target="pooler",region="eu"} 1
uptime_probe_duration_seconds{job="uptime",target="pooler",region="eu"} 0.012
target_region:uptime_probe_errors:ratio_rate5m{job="uptime",target="pooler",region="eu"} 0
target:uptime_probe_errors:ratio_rate5m{target="pooler"} 0
target:uptime_probe_errors:ratio_rate30d{target="pooler"} 0.001
supabase_active_users{window="30d",project="p"} 42
"""


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScrapedPrometheus]:
    yield from scraped_prometheus(tmp_path_factory.mktemp("prometheus"))


async def _client(
    aiohttp_client: Any, tmp_path: Path, dsn: str, am: str, prometheus_url: str
) -> TestClient:
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn},
        alertmanager_url=am,
        prometheus_url=prometheus_url,
        prometheus_timeout="2s",
        # Fresh figures on every request here; the cache is proven on its own below.
        health={"refresh_interval": "1ms", "max_staleness": "1ms"},
    )
    return await start_client(aiohttp_client, cfg, secrets)


async def _until(client: TestClient, check: Any, timeout: float = 15.0) -> dict[str, Any]:
    """GET /health (as ops) until `check(body)` holds: Prometheus's rule-free data is scraped
    each second, and a changed exposition takes a scrape to show."""
    deadline = time.monotonic() + timeout
    while True:
        resp = await client.get("/api/infrastructure/health", headers=as_user("ops"))
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        if check(body):
            return body
        assert time.monotonic() < deadline, f"never held; last answer {body}"
        await asyncio.sleep(0.2)


async def test_statuses_follow_the_data(
    seeded: tuple[str, dict[str, uuid.UUID]],
    alertmanager: str,
    prometheus: ScrapedPrometheus,
    aiohttp_client: Any,
    tmp_path: Path,
) -> None:
    dsn, _ = seeded
    marker = uuid.uuid4().hex[:8]
    prometheus.show(HEALTHY + f'step{{m="{marker}"}} 1', check=f'step{{m="{marker}"}}')
    client = await _client(aiohttp_client, tmp_path, dsn, alertmanager, prometheus.url)
    body = await _until(client, lambda b: b["services"]["supabase"]["status"] == "healthy")
    assert set(body) == {"overall_status", "services", "performance_metrics", "recent_deployments"}
    vercel = body["services"]["vercel"]
    assert vercel["status"] == "healthy"
    assert vercel["error_rate_percent"] == 2.0
    assert vercel["response_time_ms"] == 400.0
    assert vercel["region_status"] == {"fra1": {"status": "degraded", "response_time_ms": 400.0}}
    supabase = body["services"]["supabase"]
    assert supabase["response_time_ms"] == 12.0
    assert supabase["region_status"] == {"eu": {"status": "healthy", "response_time_ms": 12.0}}
    # Nothing watches Redis or the external APIs here: offline, so overall degraded.
    assert body["services"]["redis"]["status"] == "offline"
    assert body["services"]["external_apis"]["status"] == "offline"
    assert body["overall_status"] == "degraded"
    assert body["performance_metrics"] == {
        "global_response_time_ms": 12.0,
        "error_rate_percent": 2.0,
        "uptime_percent": 99.9,
        "active_users": 42,
    }
    # ops sees the deployments its policy shows: its own.
    assert [d["environment"] for d in body["recent_deployments"]] == ["preview"]
    assert set(body["recent_deployments"][0]) == {
        "environment",
        "status",
        "deployed_at",
        "git_branch",
    }

    # A firing critical of the database: supabase critical, and so overall.
    critical = 'ALERTS{alertstate="firing",alertname="SupabaseDown",service="database",severity="critical"} 1'
    prometheus.show(HEALTHY + critical, check='ALERTS{alertname="SupabaseDown"}')
    body = await _until(client, lambda b: b["services"]["supabase"]["status"] == "critical")
    assert body["overall_status"] == "critical"
    assert body["services"]["vercel"]["status"] == "healthy"

    # A warning of Vercel: degraded.
    warning = (
        'ALERTS{alertstate="firing",alertname="VercelSlow",service="vercel",severity="warning"} 1'
    )
    prometheus.show(HEALTHY + warning, check='ALERTS{alertname="VercelSlow"}')
    body = await _until(client, lambda b: b["services"]["vercel"]["status"] == "degraded")
    assert body["services"]["supabase"]["status"] == "healthy"

    # The Supabase exporter down: offline, whatever its probes say.
    down = HEALTHY.replace("supabase_up 1", "supabase_up 0")
    prometheus.show(down, check="supabase_up == 0")
    body = await _until(client, lambda b: b["services"]["supabase"]["status"] == "offline")

    # Vercel's exporter gone entirely (its series stale) and no probes: offline, never healthy.
    gone = "\n".join(line for line in HEALTHY.splitlines() if "vercel" not in line)
    prometheus.show(gone + f'\nstep{{m="{marker}-gone"}} 1', check=f'step{{m="{marker}-gone"}}')
    body = await _until(client, lambda b: b["services"]["vercel"]["status"] == "offline")
    assert body["services"]["vercel"]["region_status"] == {}


async def test_who_may_read_health(
    seeded: tuple[str, dict[str, uuid.UUID]],
    alertmanager: str,
    prometheus: ScrapedPrometheus,
    aiohttp_client: Any,
    tmp_path: Path,
) -> None:
    dsn, _ = seeded
    prometheus.show(HEALTHY + "step_who 1", check="step_who")
    client = await _client(aiohttp_client, tmp_path, dsn, alertmanager, prometheus.url)
    url = "/api/infrastructure/health"
    assert (await client.get(url)).status == 401
    for role, environments in (
        ("admin", ["production", "preview", "staging"]),
        ("developer", ["production", "preview", "staging"]),
        ("ops", ["preview"]),
    ):
        resp = await client.get(url, headers=as_user(role))
        assert resp.status == 200, role
        body = await resp.json()
        assert [d["environment"] for d in body["recent_deployments"]] == environments, role
    # The statuses are built from alerts: a caller the alerts policy refuses gets 403.
    resp = await client.get(url, headers=as_user("finance"))
    assert resp.status == 403
    assert (await resp.json())["error"] == "forbidden"
    # No query parameters are defined.
    resp = await client.get(url + "?service=vercel", headers=as_user("ops"))
    assert resp.status == 422


async def test_prometheus_down_is_503(
    seeded: tuple[str, dict[str, uuid.UUID]],
    alertmanager: str,
    aiohttp_client: Any,
    tmp_path: Path,
) -> None:
    dsn, _ = seeded
    client = await _client(aiohttp_client, tmp_path, dsn, alertmanager, "http://127.0.0.1:9")
    resp = await client.get("/api/infrastructure/health", headers=as_user("ops"))
    assert resp.status == 503
    body = await resp.json()
    assert body["error"] == "prometheus_unavailable"
    assert "Prometheus" in body["reason"]
    metrics = await (await client.get("/metrics")).text()
    assert 'api_prometheus_errors_total{operation="query"} 1.0' in metrics
    assert 'api_requests_rejected_total{reason="prometheus_unavailable"} 1.0' in metrics


async def test_one_refresh_serves_many_callers(
    monkeypatch: pytest.MonkeyPatch,
    seeded: tuple[str, dict[str, uuid.UUID]],
    alertmanager: str,
    prometheus: ScrapedPrometheus,
    aiohttp_client: Any,
    tmp_path: Path,
) -> None:
    """Within refresh_interval the platform half is built once however many ask at once; past
    it, callers are answered from the last snapshot while one refresh runs."""
    dsn, _ = seeded
    prometheus.show(HEALTHY + "step_cache 1", check="step_cache")
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn},
        alertmanager_url=alertmanager,
        prometheus_url=prometheus.url,
        health={"refresh_interval": "1h"},
    )
    client = await start_client(aiohttp_client, cfg, secrets)
    health = client.app[HEALTH]
    builds = 0
    original = health._build

    async def counting() -> Any:
        nonlocal builds
        builds += 1
        return await original()

    health._build = counting  # type: ignore[method-assign]
    reads = 0
    original_read = health_module._read_caller_half

    async def counting_read(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        return await original_read(*args)

    monkeypatch.setattr(health_module, "_read_caller_half", counting_read)
    answers = await asyncio.gather(
        *(client.get("/api/infrastructure/health", headers=as_user("ops")) for _ in range(20))
    )
    assert [r.status for r in answers] == [200] * 20
    assert builds == 1
    # One caller's burst is one database transaction too.
    assert reads == 1
    answers = await asyncio.gather(
        *(client.get("/api/infrastructure/health", headers=as_user(r)) for r in ("admin", "ops"))
    )
    assert [r.status for r in answers] == [200, 200]
    assert (builds, reads) == (1, 2)


async def test_a_maintenance_window_shows_as_maintenance(
    seeded: tuple[str, dict[str, uuid.UUID]],
    alertmanager: str,
    prometheus: ScrapedPrometheus,
    aiohttp_client: Any,
    tmp_path: Path,
) -> None:
    """A critical of the database inside its window: overall maintenance, not critical; the
    window ended, overall critical again."""
    dsn, _ = seeded
    critical = (
        'ALERTS{alertstate="firing",alertname="SupabaseDown",service="database",'
        'severity="critical"} 1'
    )
    prometheus.show(HEALTHY + critical + "\nstep_mw 1", check="step_mw")
    client = await _client(aiohttp_client, tmp_path, dsn, alertmanager, prometheus.url)
    now = datetime.now(UTC)
    resp = await client.post(
        "/api/infrastructure/maintenance",
        json={
            "services": ["database"],
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
            "reason": "Postgres upgrade",
        },
        headers=as_user("admin"),
    )
    assert resp.status == 201, await resp.text()
    window = await resp.json()
    body = await _until(client, lambda b: b["overall_status"] == "maintenance")
    assert body["services"]["supabase"]["status"] == "critical"
    resp = await client.delete(
        f"/api/infrastructure/maintenance/{window['id']}", headers=as_user("admin")
    )
    assert resp.status == 200, await resp.text()
    await _until(client, lambda b: b["overall_status"] == "critical")
