"""Each status rule of GET /health (api/health_rules.py and docs/operator-api.md), one by one,
and the platform half built from Prometheus answers (api/health.build)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.config import Health
from api.health import QUERIES, build
from api.health_rules import Judged, Signals, overall_status, region_status, service_status
from api.prometheus import Sample

UP = (1.0,)


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        # Rule 1: nothing seen at all is offline, never healthy.
        (Signals(), "offline"),
        (Signals(firing=("critical",)), "offline"),
        # Rule 1: every exporter down is offline, whatever else is known.
        (Signals(exporters_up=(0.0,), probes=3), "offline"),
        (Signals(exporters_up=(0.0, 0.0), traffic=True), "offline"),
        # One of two exporters up is enough to see it.
        (Signals(exporters_up=(0.0, 1.0)), "healthy"),
        # Rule 2: a firing critical.
        (Signals(exporters_up=UP, firing=("warning", "critical")), "critical"),
        (Signals(probes=1, firing=("critical",)), "critical"),
        # Rule 3: error or warning.
        (Signals(exporters_up=UP, firing=("error",)), "degraded"),
        (Signals(traffic=True, firing=("warning",)), "degraded"),
        # info alerts do not change the status.
        (Signals(exporters_up=UP, firing=("info",)), "healthy"),
        # Rule 4.
        (Signals(probes=2), "healthy"),
    ],
)
def test_service_status(signals: Signals, expected: str) -> None:
    assert service_status(signals) == expected


@pytest.mark.parametrize(
    ("judged", "expected"),
    [
        ({"a": Judged("healthy"), "b": Judged("healthy")}, "healthy"),
        ({"a": Judged("healthy"), "b": Judged("offline")}, "degraded"),
        ({"a": Judged("degraded"), "b": Judged("healthy")}, "degraded"),
        ({"a": Judged("critical"), "b": Judged("healthy")}, "critical"),
        # A critical service inside its window: maintenance, not critical.
        ({"a": Judged("critical", in_maintenance=True), "b": Judged("healthy")}, "maintenance"),
        # A critical service outside the window outranks another's maintenance.
        ({"a": Judged("healthy", in_maintenance=True), "b": Judged("critical")}, "critical"),
        ({"a": Judged("healthy", in_maintenance=True), "b": Judged("offline")}, "maintenance"),
    ],
)
def test_overall_status(judged: dict[str, Judged], expected: str) -> None:
    assert overall_status(judged) == expected


def test_region_status() -> None:
    kw = {"degraded_at": 0.01, "critical_at": 0.5}
    assert region_status(None, **kw) == "offline"
    assert region_status(0.0, **kw) == "healthy"
    assert region_status(0.01, **kw) == "degraded"
    assert region_status(0.5, **kw) == "critical"


def _s(value: float, **labels: str) -> Sample:
    return Sample(labels, 0.0, value)


def _empty() -> dict[str, list[Sample]]:
    return {name: [] for name in [*QUERIES, "up"]}


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_no_data_is_offline_everywhere() -> None:
    body = build(Health(), _empty(), frozenset(), NOW)
    assert body["overall_status"] == "degraded"
    for name in ("vercel", "supabase", "redis", "external_apis"):
        service = body["services"][name]
        assert service["status"] == "offline"
        assert service["region_status"] == {}
        assert service["last_check"] == "2026-11-30T12:00:00Z"
    assert body["performance_metrics"] == {
        "global_response_time_ms": 0.0,
        "error_rate_percent": 0.0,
        "uptime_percent": 0.0,
        "active_users": 0,
    }


def test_figures_from_traffic_probes_and_alerts() -> None:
    results = _empty()
    results["up"] = [_s(1.0, __name__="vercel_up"), _s(1.0, __name__="supabase_up")]
    results["vercel_requests"] = [_s(200.0)]
    results["vercel_errors"] = [_s(3.0)]
    results["vercel_p95"] = [_s(0.25)]
    results["vercel_region_errors"] = [_s(0.0, region="fra1"), _s(0.6, region="iad1")]
    results["vercel_region_p95"] = [_s(0.2, region="fra1"), _s(0.3, region="iad1")]
    results["probe_count"] = [_s(2, service="db", region="eu"), _s(1, service="db", region="us")]
    results["probe_errors"] = [
        _s(0.0, service="db", region="eu"),
        _s(0.02, service="db", region="us"),
    ]
    results["probe_seconds"] = [
        _s(0.010, service="db", region="eu"),
        _s(0.030, service="db", region="us"),
    ]
    results["alerts"] = [
        _s(1, alertname="X", service="database", severity="warning"),
        _s(1, alertname="Y", service="monitoring", severity="critical"),
        _s(1, alertname="Z"),  # no service label: belongs to nobody
    ]
    results["global"] = [
        _s(0.05, figure="seconds"),
        _s(0.999, figure="availability"),
        _s(0.5, figure="probe_errors"),
        _s(1234, figure="users"),
    ]
    body = build(Health(), results, frozenset(), NOW)
    vercel = body["services"]["vercel"]
    assert vercel["status"] == "healthy"
    assert vercel["error_rate_percent"] == 1.5
    assert vercel["response_time_ms"] == 250.0
    assert vercel["region_status"] == {
        "fra1": {"status": "healthy", "response_time_ms": 200.0},
        "iad1": {"status": "critical", "response_time_ms": 300.0},
    }
    supabase = body["services"]["supabase"]
    # A warning of its alerts' service label ("database") degrades it; monitoring's critical
    # belongs to no spec service.
    assert supabase["status"] == "degraded"
    assert supabase["response_time_ms"] == 20.0
    assert supabase["error_rate_percent"] == 1.0
    assert supabase["region_status"] == {
        "eu": {"status": "healthy", "response_time_ms": 10.0},
        "us": {"status": "degraded", "response_time_ms": 30.0},
    }
    assert body["overall_status"] == "degraded"  # redis and external_apis see nothing
    assert body["performance_metrics"] == {
        "global_response_time_ms": 50.0,
        # Vercel's request error ratio when there is traffic, not the probes'.
        "error_rate_percent": 1.5,
        "uptime_percent": 99.9,
        "active_users": 1234,
    }


def test_uptime_alerts_count_for_their_targets_service() -> None:
    results = _empty()
    results["up"] = [_s(1.0, __name__="vercel_up")]
    results["alerts"] = [_s(1, alertname="UptimeTargetDown", service="web", severity="critical")]
    body = build(Health(), results, frozenset(), NOW)
    assert body["services"]["vercel"]["status"] == "critical"


def test_maintenance_and_critical() -> None:
    results = _empty()
    results["up"] = [_s(1.0, __name__="vercel_up"), _s(1.0, __name__="supabase_up")]
    results["alerts"] = [_s(1, service="database", severity="critical")]
    inside = build(Health(), results, frozenset({"database"}), NOW)
    assert inside["services"]["supabase"]["status"] == "critical"
    assert inside["overall_status"] == "maintenance"
    outside = build(Health(), results, frozenset({"vercel"}), NOW)
    assert outside["overall_status"] == "critical"


def test_config_overrides_keep_other_defaults() -> None:
    health = Health.model_validate({"services": {"redis": {"uptime_services": ["cache"]}}})
    assert health.services["redis"].uptime_services == ("cache",)
    assert health.services["vercel"].vercel_traffic
    results = _empty()
    results["probe_count"] = [_s(1, service="cache", region="eu")]
    results["probe_errors"] = [_s(0.0, service="cache", region="eu")]
    assert build(health, results, frozenset(), NOW)["services"]["redis"]["status"] == "healthy"
