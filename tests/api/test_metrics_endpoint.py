"""GET /api/infrastructure/metrics against a real Prometheus holding known recording-rule
samples (backfilled with promtool, tests/api/prometheus_data.py) and a real PostgreSQL whose
infrastructure_metrics policy decides who may read. Every value asserted is computed by hand
from the samples below.

The data: four hours of samples every 30 s, 15 s off the hour (so no sample lies on an
interval's boundary, which Prometheus 2 would count in both intervals). The period asked is
the last two whole hours [S, S+2h] with interval 1h; the previous period is [S-2h, S].
"""

from __future__ import annotations

import itertools
import math
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from api import metric_catalogue as cat
from api.infra_metrics import compare
from compose.processes import free_port
from tests.api.conftest import MACHINE_TOKEN, as_user, bearer, start_client, write_config
from tests.api.prometheus_data import openmetrics, prometheus_data

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3600
# S: the start of the period asked; two whole hours before the last whole hour (all past).
S = (int(time.time()) // HOUR) * HOUR - 3 * HOUR
SAMPLES = [S - 2 * HOUR + 15 + 30 * k for k in range(480)]  # [S-2h, S+2h), 30 s apart


def _bucket(t: float) -> int:
    """-2, -1 (previous period), 0, 1 (the period asked): which hour a sample is in."""
    return int((t - S) // HOUR)


def _index(t: float) -> int:
    """The sample's position within its hour (0..119)."""
    return int((t - S) % HOUR) // 30


def _series() -> str:
    web = [
        (t, 5.0 if _bucket(t) < 0 else 10.0 if _bucket(t) == 0 else float(_index(t)))
        for t in SAMPLES
    ]
    api = [(t, 1.0) for t in SAMPLES]
    errors = [
        (
            t,
            0.02
            if _bucket(t) < 0
            else 0.01
            if _bucket(t) == 0
            else (0.0 if _index(t) < 60 else 0.1),
        )
        for t in SAMPLES
    ]
    p95 = "project_kind:vercel_request_duration_seconds:p95_rate5m"
    return openmetrics(
        [
            ("project:vercel_requests:rate5m", {"project": "web"}, web),
            ("project:vercel_requests:rate5m", {"project": "api"}, api),
            ("target:uptime_probe_errors:ratio_rate5m", {"target": "web"}, errors),
            (
                p95,
                {"project": "web", "environment": "production", "route_kind": "function"},
                [(t, 0.1 if _bucket(t) < 0 else 0.2) for t in SAMPLES],
            ),
            (
                p95,
                {"project": "web", "environment": "production", "route_kind": "static"},
                [(t, 0.05) for t in SAMPLES],
            ),
            # Preview deployments never count: the catalogue reads production only.
            (
                p95,
                {"project": "web", "environment": "preview", "route_kind": "function"},
                [(t, 9.0) for t in SAMPLES],
            ),
        ]
    )


known = prometheus_data(_series)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


PERIOD = {"start_time": _iso(S), "end_time": _iso(S + 2 * HOUR), "interval": "1h"}
STAMPS = [_iso(S + HOUR), _iso(S + 2 * HOUR)]


@pytest.fixture
async def api(seeded: Any, known: str, aiohttp_client: Any, tmp_path: Path) -> TestClient:
    dsn, _ = seeded
    cfg, secrets, _ = write_config(tmp_path, database={"conninfo": dsn}, prometheus_url=known)
    return await start_client(aiohttp_client, cfg, secrets)


async def _get(api: TestClient, role: str = "admin", **params: str) -> tuple[int, Any]:
    resp = await api.get("/api/infrastructure/metrics", params=params, headers=as_user(role))
    return resp.status, await resp.json()


def _values(doc: dict[str, Any]) -> list[tuple[str, str, str, float]]:
    return [
        (m["timestamp"], m["service_name"], m["metric_type"], m["value"]) for m in doc["metrics"]
    ]


# --- the catalogue --------------------------------------------------------------------------


def _recorded() -> set[str]:
    names: set[str] = set()
    for path in sorted((ROOT / "alert_rules" / "generated").glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(r["record"] for r in group["rules"] if "record" in r)
    return names


def test_every_catalogue_entry_reads_a_recording_rule_that_exists() -> None:
    recorded = _recorded()
    missing = [(e.metric_type, e.rule) for e in cat.CATALOGUE if e.rule not in recorded]
    assert missing == []


def test_catalogue_names_are_unique_per_service_and_documented() -> None:
    pairs = [(e.service_name, e.metric_type) for e in cat.CATALOGUE]
    assert len(pairs) == len(set(pairs))
    docs = (ROOT / "docs" / "operator-api.md").read_text()
    doc = yaml.safe_load((ROOT / "api" / "openapi.yaml").read_text())
    params = {
        p["name"]: p["schema"]
        for p in doc["paths"]["/api/infrastructure/metrics"]["get"]["parameters"]
    }
    assert params["service"]["enum"] == list(cat.SERVICES)
    assert params["metric_type"]["enum"] == list(cat.METRIC_TYPES)
    for e in cat.CATALOGUE:
        row = f"| `{e.service_name}` | `{e.metric_type}` | `{e.rule}` | {e.unit} |"
        assert row in docs, row


def test_comparison_rules() -> None:
    assert compare([110.0], [100.0]) == {"change_percent": pytest.approx(10.0), "direction": "up"}
    assert compare([96.0], [100.0]) == {
        "change_percent": pytest.approx(-4.0),
        "direction": "stable",
    }
    assert compare([-2.0], [-1.0]) == {"change_percent": pytest.approx(-100.0), "direction": "down"}
    assert compare([1.0], []) == {"change_percent": 0.0, "direction": "stable"}
    assert compare([], [1.0]) == {"change_percent": 0.0, "direction": "stable"}
    assert compare([3.0], [0.0]) == {"change_percent": 0.0, "direction": "up"}


# --- values ---------------------------------------------------------------------------------


@pytest.mark.integration
async def test_average_request_rate_summary_and_comparison(api: TestClient) -> None:
    status, doc = await _get(api, service="vercel", metric_type="request_rate", **PERIOD)
    assert status == 200, doc
    # Hour 1: web 10 + api 1; hour 2: web 0..119 (mean 59.5) + api 1. Before: 5 + 1.
    assert doc["metrics"] == [
        {
            "timestamp": STAMPS[0],
            "service_name": "vercel",
            "metric_type": "request_rate",
            "value": pytest.approx(11.0),
            "unit": "requests_per_second",
        },
        {
            "timestamp": STAMPS[1],
            "service_name": "vercel",
            "metric_type": "request_rate",
            "value": pytest.approx(60.5),
            "unit": "requests_per_second",
        },
    ]
    assert doc["summary"] == {
        "avg_value": pytest.approx(35.75),
        "max_value": pytest.approx(60.5),
        "min_value": pytest.approx(11.0),
        "data_points": 2,
    }
    assert doc["comparison"] == {
        "vs_previous_period": {
            "change_percent": pytest.approx((35.75 - 6.0) / 6.0 * 100),
            "direction": "up",
        }
    }


@pytest.mark.integration
@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        ("max", [11.0, 120.0]),
        ("min", [11.0, 1.0]),
        # quantile_over_time over 0..119: rank 0.95 x 119 = 113.05 → 113.05; + api's 1.
        ("p95", [11.0, 114.05]),
        ("p99", [11.0, 0.99 * 119 + 1]),
        ("sum", [120 * 11.0, sum(range(120)) + 120.0]),
    ],
)
async def test_aggregations_over_each_interval(
    api: TestClient, aggregation: str, expected: list[float]
) -> None:
    status, doc = await _get(
        api, service="vercel", metric_type="request_rate", aggregation=aggregation, **PERIOD
    )
    assert status == 200, doc
    assert [m["value"] for m in doc["metrics"]] == pytest.approx(expected)
    assert [m["timestamp"] for m in doc["metrics"]] == STAMPS


@pytest.mark.integration
@pytest.mark.parametrize(
    ("aggregation", "expected", "direction"),
    [
        # Error ratio hour 1: 0.01; hour 2: half 0, half 0.1. Before: 0.02 (availability 98).
        ("avg", [99.0, 95.0], "stable"),
        ("max", [99.0, 100.0], "stable"),  # +1.5 %: under 5 %
        ("min", [99.0, 90.0], "stable"),  # -3.6 %
    ],
)
async def test_availability_is_the_complement_of_the_error_ratio(
    api: TestClient, aggregation: str, expected: list[float], direction: str
) -> None:
    status, doc = await _get(api, metric_type="availability", aggregation=aggregation, **PERIOD)
    assert status == 200, doc
    assert _values(doc) == [
        (STAMPS[0], "uptime", "availability", pytest.approx(expected[0])),
        (STAMPS[1], "uptime", "availability", pytest.approx(expected[1])),
    ]
    avg_now = sum(expected) / 2
    change = (avg_now - 98.0) / 98.0 * 100
    assert doc["comparison"]["vs_previous_period"] == {
        "change_percent": pytest.approx(change),
        "direction": direction,
    }
    assert doc["metrics"][0]["unit"] == "percent"


@pytest.mark.integration
async def test_latency_is_the_slowest_production_series_in_ms(api: TestClient) -> None:
    status, doc = await _get(api, metric_type="response_time_p95", **PERIOD)
    assert status == 200, doc
    # function 0.2 s beats static 0.05 s; preview's 9 s is not read. Before: 0.1 s.
    assert _values(doc) == [
        (STAMPS[0], "vercel", "response_time_p95", pytest.approx(200.0)),
        (STAMPS[1], "vercel", "response_time_p95", pytest.approx(200.0)),
    ]
    assert doc["comparison"]["vs_previous_period"] == {
        "change_percent": pytest.approx(100.0),
        "direction": "up",
    }


@pytest.mark.integration
async def test_a_service_alone_gives_every_metric_type_with_data(api: TestClient) -> None:
    status, doc = await _get(api, service="vercel", **PERIOD)
    assert status == 200, doc
    # error_rate and the p50/p99 rules hold no samples here: no points, not zeros.
    assert sorted({m["metric_type"] for m in doc["metrics"]}) == [
        "request_rate",
        "response_time_p95",
    ]
    assert doc["summary"]["data_points"] == 4


@pytest.mark.integration
async def test_no_data_is_an_empty_answer_not_an_error(api: TestClient) -> None:
    status, doc = await _get(api, service="billing", **PERIOD)
    assert status == 200, doc
    assert doc == {
        "metrics": [],
        "summary": {"avg_value": 0.0, "max_value": 0.0, "min_value": 0.0, "data_points": 0},
        "comparison": {"vs_previous_period": {"change_percent": 0.0, "direction": "stable"}},
    }


@pytest.mark.integration
async def test_defaults_are_the_last_24_hours_by_the_minute(api: TestClient) -> None:
    status, doc = await _get(api, metric_type="request_rate")
    assert status == 200, doc
    stamps = [datetime.fromisoformat(m["timestamp"]).timestamp() for m in doc["metrics"]]
    # Four hours of samples in 1-minute intervals (ending wherever "now" falls): about 240
    # points, a minute apart, the last within the day before now.
    assert 239 <= len(stamps) <= 241
    assert {round(b - a, 3) for a, b in itertools.pairwise(stamps)} == {60.0}
    assert time.time() - 24 * HOUR < stamps[0] < stamps[-1] <= time.time()


# --- who may read ---------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("role", ["ops", "finance", "developer"])
async def test_only_the_policy_s_admins_may_read(api: TestClient, role: str) -> None:
    status, doc = await _get(api, role, metric_type="request_rate", **PERIOD)
    assert status == 403
    assert doc["error"] == "forbidden"


@pytest.mark.integration
async def test_a_machine_with_the_ops_role_is_refused_too(api: TestClient) -> None:
    resp = await api.get("/api/infrastructure/metrics", headers=bearer(MACHINE_TOKEN))
    assert resp.status == 403


@pytest.mark.integration
async def test_without_a_token_401(api: TestClient) -> None:
    resp = await api.get("/api/infrastructure/metrics")
    assert resp.status == 401


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"service": "redis"}, "service must be one of"),
        ({"metric_type": "cpu_usage"}, "metric_type must be one of"),
        ({"service": "billing", "metric_type": "request_rate"}, "has no metric_type"),
        ({"aggregation": "median"}, "aggregation must be one of"),
        ({"interval": "2h"}, "interval must be one of"),
        ({"promql": "up"}, "unknown query parameter"),
        ({"start_time": "yesterday"}, "RFC 3339"),
        ({"start_time": "2026-11-30T12:00:00"}, "time zone offset"),
        ({"start_time": "20261130T120000Z"}, "RFC 3339"),
        ({"start_time": "2026-02-30T12:00:00Z"}, "RFC 3339"),
        ({"start_time": "1969-12-31T00:00:00Z"}, "before 1970"),
        (
            {"start_time": "2026-11-30T12:00:00Z", "end_time": "2026-11-30T11:00:00Z"},
            "before end_time",
        ),
        (
            {
                "start_time": "2026-11-30T12:00:00Z",
                "end_time": "2026-11-30T12:30:00Z",
                "interval": "1h",
            },
            "shorter than one interval",
        ),
        # 8 days by the minute: 11,520 points, over Prometheus's 11,000.
        (
            {
                "start_time": "2026-11-01T00:00:00Z",
                "end_time": "2026-11-09T00:00:00Z",
                "interval": "1m",
            },
            "at most 11000",
        ),
    ],
)
async def test_bad_filters_are_422_with_a_reason(
    api: TestClient, params: dict[str, str], reason: str
) -> None:
    status, doc = await _get(api, **params)
    assert status == 422, doc
    assert doc["error"] == "invalid_request"
    assert reason in doc["reason"]


@pytest.mark.integration
async def test_repeated_parameter_is_422(api: TestClient) -> None:
    resp = await api.get(
        "/api/infrastructure/metrics?service=vercel&service=uptime", headers=as_user("admin")
    )
    assert resp.status == 422


# --- Prometheus down ------------------------------------------------------------------------


@pytest.mark.integration
async def test_prometheus_down_is_503_and_counted(
    seeded: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    dsn, _ = seeded
    nobody = f"http://127.0.0.1:{free_port()}"
    cfg, secrets, _ = write_config(tmp_path, database={"conninfo": dsn}, prometheus_url=nobody)
    api = await start_client(aiohttp_client, cfg, secrets)
    status, doc = await _get(api, metric_type="request_rate", **PERIOD)
    assert status == 503
    assert doc["error"] == "prometheus_unavailable"
    text = await (await api.get("/metrics")).text()
    assert 'api_prometheus_errors_total{operation="query_range"}' in text
    counted = re.search(r'api_prometheus_errors_total\{operation="query_range"\} (\S+)', text)
    assert counted is not None
    assert float(counted.group(1)) >= 1
    assert not math.isnan(float(counted.group(1)))
