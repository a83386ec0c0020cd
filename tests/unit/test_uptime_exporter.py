"""The exporter as Prometheus sees it: /metrics content, conventions, staleness, retries, bounds."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.exporter import render
from exporters.uptime import collector
from exporters.uptime.app import UptimeExporter, make_app
from exporters.uptime.config import UptimeConfig
from exporters.uptime.probe import ProbeResult
from exporters.uptime.scheduler import Prober, ProberStats, TargetState, plan

COUNTS = web.AppKey("counts", dict)


def target_app() -> web.Application:
    app = web.Application()
    app[COUNTS] = {"flaky": 0, "in_flight": 0, "max_in_flight": 0}

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def flaky(request: web.Request) -> web.Response:
        c = request.app[COUNTS]
        c["flaky"] += 1
        # Fails once, then recovers: one blip that confirmation must absorb.
        return web.Response(status=500 if c["flaky"] == 1 else 200)

    async def slow(request: web.Request) -> web.Response:
        c = request.app[COUNTS]
        c["in_flight"] += 1
        c["max_in_flight"] = max(c["max_in_flight"], c["in_flight"])
        await asyncio.sleep(0.2)
        c["in_flight"] -= 1
        return web.Response(text="ok")

    app.router.add_get("/ok", ok)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/slow", slow)
    app.router.add_get("/secret/path", ok)
    return app


@pytest.fixture
async def target() -> TestServer:
    srv = TestServer(target_app(), host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


def cfg(target: TestServer, **extra: object) -> UptimeConfig:
    base = f"http://127.0.0.1:{target.port}"
    doc: dict[str, object] = {
        "interval": "1s",
        "timeout": "900ms",
        "confirm_delay": "50ms",
        "targets": [
            {"name": "ok", "service": "web", "http": {"url": f"{base}/secret/path?token=abc"}},
            {"name": "flaky", "service": "api", "http": {"url": f"{base}/flaky"}},
            {"name": "tcp", "tcp": {"address": f"127.0.0.1:{target.port}"}},
        ],
    }
    doc.update(extra)
    return UptimeConfig.model_validate(doc)


async def scrape_when(client: TestClient, pattern: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        resp = await client.get("/metrics")
        assert resp.status == 200
        text = await resp.text()
        if re.search(pattern, text, re.M):
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{pattern!r} never appeared in:\n{text}")


async def test_metrics_follow_conventions(
    target: TestServer, aiohttp_client, promtool: str
) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(make_app(cfg(target)))
    text = await scrape_when(client, r'^uptime_probes_total\{target="tcp"\} [1-9]')
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "uptime_up 1.0" in text
    assert re.search(r'^uptime_build_info\{revision="[^"]+",version="[^"]+"\} 1\.0$', text, re.M)
    # Bounded labels: the endpoint is scheme://host:port; paths and queries never appear.
    assert "/secret/path" not in text
    assert "token=abc" not in text
    assert f'endpoint="http://127.0.0.1:{target.port}"' in text
    # The exporter never sets the region: Prometheus adds it per scrape config.
    assert "region=" not in text
    for line in text.splitlines():
        if line.startswith("uptime_probe_phase_duration_seconds{"):
            assert re.search(r'phase="(resolve|connect|tls|processing|transfer)"', line)


async def test_confirmation_retry_absorbs_a_single_blip(target: TestServer, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(make_app(cfg(target)))
    text = await scrape_when(client, r'^uptime_probes_total\{target="flaky"\} [1-9]')
    assert 'uptime_probe_success{target="flaky"} 1.0' in text
    assert 'uptime_probe_retries_total{target="flaky"} 1.0' in text
    assert 'uptime_probe_failures_total{target="flaky"} 0.0' in text


async def test_failure_is_reported_with_its_reason(aiohttp_client, unused_tcp_port: int) -> None:  # type: ignore[no-untyped-def]
    conf = UptimeConfig.model_validate(
        {
            "interval": "1s",
            "timeout": "500ms",
            "confirm_attempts": 2,
            "confirm_delay": "50ms",
            "targets": [{"name": "gone", "http": {"url": f"http://127.0.0.1:{unused_tcp_port}/"}}],
        }
    )
    client = await aiohttp_client(make_app(conf))
    text = await scrape_when(client, r'^uptime_probe_failures_total\{target="gone"\} [1-9]')
    assert 'uptime_probe_success{target="gone"} 0.0' in text
    assert 'uptime_probe_failure_reason{reason="connect",target="gone"} 1.0' in text
    assert 'uptime_probe_retries_total{target="gone"} 1.0' in text


async def test_concurrency_is_bounded(target: TestServer) -> None:
    base = f"http://127.0.0.1:{target.port}"
    conf = UptimeConfig.model_validate(
        {
            "interval": "2s",
            "timeout": "1s",
            "concurrency": 2,
            "jitter": 0.0,
            "targets": [{"name": f"t{i}", "http": {"url": f"{base}/slow"}} for i in range(8)],
        }
    )
    prober = Prober(conf)
    prober.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(s.last for s in prober.states.values()):
            await asyncio.sleep(0.05)
    finally:
        await prober.stop()
    assert all(s.last and s.last.success for s in prober.states.values())
    assert target.app[COUNTS]["max_in_flight"] == 2


def test_stale_results_are_dropped_and_up_goes_to_zero() -> None:
    conf = UptimeConfig.model_validate(
        {"interval": "10s", "timeout": "5s", "targets": [{"name": "a", "tcp": {"address": "h:1"}}]}
    )
    (planned,) = plan(conf)
    now = 1_000_000.0
    old = ProbeResult(success=True, finished_at=now - 600)
    states = {"a": TargetState(planned, last=old, probes=7)}
    exporter = UptimeExporter(conf)

    def scrape(states: dict[str, TargetState]) -> str:
        snap = collector.snapshot_of(states, ProberStats(), conf, prober_running=True, now=now)
        return render(exporter, snap, [], 0.0).decode()

    text = scrape(states)
    assert "uptime_up 0.0" in text
    assert 'uptime_probe_success{target="a"}' not in text
    # Counters stay: they are history, not a claim about now.
    assert 'uptime_probes_total{target="a"} 7.0' in text

    fresh = {
        "a": TargetState(planned, last=ProbeResult(success=True, finished_at=now - 5), probes=7)
    }
    text = scrape(fresh)
    assert "uptime_up 1.0" in text
    assert 'uptime_probe_success{target="a"} 1.0' in text


async def test_health_endpoints(target: TestServer, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(make_app(cfg(target)))
    assert (await client.get("/-/healthy")).status == 200
    assert (await client.get("/-/ready")).status == 200
    assert "wsinfra uptime exporter" in await (await client.get("/")).text()
