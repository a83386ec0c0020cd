"""The uptime exporter's output from a fixed snapshot: an HTTP target that succeeded with every
optional field, one that failed, a TCP target, and one not probed yet."""

from __future__ import annotations

from exporters.uptime import collector
from exporters.uptime.app import UptimeExporter
from exporters.uptime.config import UptimeConfig
from exporters.uptime.probe import PHASES, SECURITY_HEADERS, ProbeResult
from exporters.uptime.scheduler import ProberStats, TargetState, plan
from tests.golden import check_golden, render_golden

NOW = 1_780_000_000.0


def snapshot() -> tuple[UptimeConfig, collector.UptimeSnapshot]:
    conf = UptimeConfig.model_validate(
        {
            "interval": "30s",
            "targets": [
                {"name": "web-home", "service": "web", "http": {"url": "https://example.com/"}},
                {
                    "name": "web-api",
                    "service": "api",
                    "http": {"url": "https://api.example.com/health"},
                },
                {"name": "db", "service": "database", "tcp": {"address": "db.example.com:5432"}},
                {"name": "new", "http": {"url": "https://new.example.com/"}},
            ],
        }
    )
    states = {t.name: TargetState(t) for t in plan(conf)}
    states["web-home"].last = ProbeResult(
        success=True,
        status_code=200,
        duration=0.25,
        phases=dict.fromkeys(PHASES, 0.05),
        redirects=1,
        tls_not_after=NOW + 30 * 86400,
        security_headers=dict.fromkeys(SECURITY_HEADERS, True),
        hsts_max_age=31536000.0,
        finished_at=NOW - 10,
    )
    states["web-home"].probes = 120
    states["web-api"].last = ProbeResult(
        success=False, reason="status", status_code=503, duration=0.1, finished_at=NOW - 5
    )
    states["web-api"].probes, states["web-api"].failures, states["web-api"].retries = 120, 3, 6
    states["db"].last = ProbeResult(success=True, duration=0.01, finished_at=NOW - 20)
    states["db"].probes = 119
    stats = ProberStats(in_flight=2, started_at=NOW - 3600)
    return conf, collector.snapshot_of(states, stats, conf, prober_running=True, now=NOW)


def test_uptime_golden() -> None:
    conf, snap = snapshot()
    check_golden("uptime", render_golden(UptimeExporter(conf), snap))
