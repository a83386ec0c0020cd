"""The Vercel exporter's golden output: every family it can produce, rendered by its pure
collector from one snapshot taken as /metrics takes it, compared with vercel.prom and checked by
promtool.

The snapshot comes from the real adapters on a simulated clock (1_780_000_000):
- the deployments poller, two refreshes of two projects against a scripted API. "web": a first
  load (the baseline: nothing counted), then deployments that reached every final state
  (ready, error, canceled, deleted), one still building, one that vanished while queued, one
  whose timestamps are out of order and one record without its fields. "docs": loaded once,
  then a 429 (waited for) and two 502s, so its second refresh fails and it is served as of the
  first (still fresh);
- the three drains, fed signed deliveries: log lines (requests, errors, a firewall action, a
  duplicate request id, a background revalidation, an unlisted project, a region not Vercel's,
  then a replayed line), OTLP spans (API and page routes, a non-server span, a span with a bad
  time) and Speed Insights records (time metrics, CLS, an unknown metric, a bad value); the log
  drain sampled at 0.5, so its counts weigh 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from common.upstream import StaticBearer
from exporters.vercel import api
from exporters.vercel.app import VercelExporter
from exporters.vercel.config import VercelConfig
from fakes.vercel_drains import sign
from fakes.vercel_setup import SimClock
from tests.golden import check_golden, golden_sample_names, render_golden
from tests.vercel.helpers import value

NOW = 1_780_000_000.0
T1 = NOW - 60  # first refresh
T2 = NOW - 30  # second refresh
WEB = "prj_web0000000000000000000000"
DOCS = "prj_docs000000000000000000000"
SECRETS = {
    "token": "golden-token",
    "logs": "logs-secret",
    "traces": "traces-secret",
    "speed_insights": "si-secret",
    "verify_code": "verify",
}
SHA = "0123456789abcdef0123456789abcdef01234567"


def config(tmp: Path) -> VercelConfig:
    return VercelConfig.model_validate(
        {
            "api": {"token_file": str(tmp / "token"), "team_id": "team_golden"},
            "projects": [{"id": WEB, "name": "web"}, {"id": DOCS, "name": "docs"}],
            "drains": {
                "logs": {"secret_file": str(tmp / "logs"), "sample_rate": 0.5},
                "traces": {"secret_file": str(tmp / "traces")},
                "speed_insights": {"secret_file": str(tmp / "si")},
            },
        }
    )


def ms(t: float) -> int:
    return int(t * 1000)


def deployment(
    uid: str,
    state: str,
    created: float,
    *,
    target: str | None = None,
    building: float | None = None,
    ready: float | None = None,
    ref: str = "main",
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "uid": uid,
        "createdAt": ms(created),
        "readyState": state,
        "target": target,
        "meta": {"githubCommitSha": SHA, "githubCommitRef": ref},
    }
    if building is not None:
        doc["buildingAt"] = ms(building)
    if ready is not None:
        doc["ready"] = ms(ready)
    return doc


def listing(*items: dict[str, Any], remaining: int, reset: float) -> httpx.Response:
    return httpx.Response(
        200,
        json={"deployments": list(items), "pagination": {"count": len(items), "next": None}},
        headers={"X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(int(reset))},
    )


def scripted_api() -> Callable[[httpx.Request], httpx.Response]:
    """The answers, per project, in the order they are asked for."""
    answers = {
        WEB: [
            listing(
                deployment("dpl_base", "READY", T1 - 3600, target="production", ready=T1 - 3500),
                deployment("dpl_prev", "READY", T1 - 1800, ready=T1 - 1700, ref="feature"),
                deployment("dpl_build", "BUILDING", T1 - 40, building=T1 - 35),
                deployment("dpl_gone", "QUEUED", T1 - 10),
                remaining=99,
                reset=T1 + 60,
            ),
            listing(
                deployment("dpl_build", "READY", T1 - 40, building=T1 - 35, ready=T2 - 5),
                deployment("dpl_err", "ERROR", T1 + 5, target="production", building=T1 + 6),
                deployment("dpl_cancel", "CANCELED", T1 + 10),
                deployment("dpl_del", "DELETED", T1 + 12, target="staging"),
                deployment("dpl_new", "BUILDING", T1 + 20, target="production", building=T1 + 22),
                deployment("dpl_skew", "READY", T1 + 1, building=T1 + 3, ready=T1 + 2),
                {"uid": "dpl_bad"},
                remaining=97,
                reset=T1 + 60,
            ),
        ],
        DOCS: [
            listing(
                deployment("dpl_docs", "READY", T1 - 7200, target="production", ready=T1 - 7000),
                remaining=98,
                reset=T1 + 60,
            ),
            httpx.Response(
                429,
                json={"error": {"code": "rate_limited", "limit": {"reset": int(T2 + 2)}}},
                headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(T2 + 2))},
            ),
            *[
                httpx.Response(
                    502,
                    json={"error": {"code": "internal_server_error"}},
                    headers={"X-RateLimit-Remaining": "96", "X-RateLimit-Reset": str(int(T2 + 62))},
                )
                for _ in range(2)
            ],
        ],
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return answers[request.url.params["projectId"]].pop(0)

    return answer


def log_lines() -> list[dict[str, Any]]:
    def line(n: int, **fields: Any) -> dict[str, Any]:
        return {
            "id": f"line-{n}",
            "projectId": WEB,
            "environment": "production",
            "level": "info",
            "source": "edge",
            "timestamp": ms(NOW - 100),
            **fields,
        }

    return [
        line(
            1,
            requestId="req-1",
            proxy={"statusCode": 200, "region": "iad1", "vercelCache": "HIT", "pathType": "static"},
        ),
        line(
            2,
            requestId="req-1",  # a second line of the same request
            proxy={"statusCode": 200, "region": "iad1", "vercelCache": "HIT", "pathType": "static"},
        ),
        line(
            3,
            level="error",
            source="lambda",
            requestId="req-2",
            proxy={"statusCode": 500, "region": "fra1", "vercelCache": "MISS", "pathType": "func"},
        ),
        line(4, level="fatal", source="lambda"),
        line(
            5,
            projectId="prj_someone_else",
            environment="preview",
            requestId="req-3",
            proxy={"statusCode": 403, "region": "mars1", "pathType": "func", "wafAction": "deny"},
        ),
        line(6, requestId="req-4", proxy={"statusCode": -1, "region": "iad1"}),
    ]


def otlp() -> dict[str, Any]:
    def attr(key: str, value: Any) -> dict[str, Any]:
        kind = "intValue" if isinstance(value, int) else "stringValue"
        return {"key": key, "value": {kind: value}}

    def span(name: str, kind: int, start: float, seconds: float, *attrs: Any) -> dict[str, Any]:
        return {
            "name": name,
            "kind": kind,
            "startTimeUnixNano": str(int(start) * 10**9),
            "endTimeUnixNano": str(int(start) * 10**9 + int(seconds * 10**9)),
            "attributes": list(attrs),
        }

    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        attr("vercel.projectId", WEB),
                        attr("cloud.region", "iad1"),
                        attr("deployment.environment.name", "production"),
                    ]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            span(
                                "GET /api/users/[id]",
                                2,
                                NOW - 50,
                                0.125,
                                attr("http.route", "/api/users/[id]"),
                                attr("http.status_code", 200),
                            ),
                            span(
                                "GET /dashboard",
                                2,
                                NOW - 40,
                                0.75,
                                attr("http.status_code", 500),
                            ),
                            span("db.query", 1, NOW - 40, 0.5),  # not a request
                            span("GET /", 2, NOW - 30, -1.0),  # ends before it starts
                        ]
                    }
                ],
            }
        ]
    }


def vitals() -> list[dict[str, Any]]:
    def record(metric: str, value: Any, **fields: Any) -> dict[str, Any]:
        return {
            "schema": "vercel.speed_insights.v1",
            "timestamp": "2026-05-28T12:00:00.000Z",
            "projectId": WEB,
            "metricType": metric,
            "value": value,
            "route": "/dashboard",
            "path": "/dashboard",
            "deviceType": "desktop",
            "country": "US",
            "vercelEnvironment": "production",
            **fields,
        }

    return [
        record("LCP", 1800),
        record("TTFB", 300, route="/api/users/[id]", deviceType="mobile", country="DE"),
        record("INP", 150, vercelEnvironment="preview"),
        record("CLS", 0.05),
        record("XYZ", 1),  # not a metric Speed Insights sends
        record("LCP", -1),  # no such time
    ]


def deliver(exporter: VercelExporter, drain: str, doc: Any) -> None:
    body = json.dumps(doc).encode()
    sig = sign(SECRETS[drain], body)
    exporter.drains._process(drain, body, {"signature": sig, "content_type": "application/json"})


async def exporter_with_data(tmp: Path, clock: SimClock) -> VercelExporter:
    cfg = config(tmp)
    upstream = api.make_upstream(
        cfg.api,
        auth=StaticBearer(SECRETS["token"]),
        transport=httpx.MockTransport(scripted_api()),
        clock=clock,
        sleep=clock.sleep,
    )
    exporter = VercelExporter(cfg, SECRETS, upstream=upstream, clock=clock, sleep=clock.sleep)
    source = exporter.deployments
    assert source is not None
    clock.t = T1
    assert await source.poll()
    clock.t = T2
    assert not await source.poll()
    source.loop.last_duration = 4.25  # measured on the real clock: pinned

    clock.t = NOW
    lines = log_lines()
    deliver(exporter, "logs", lines)
    deliver(exporter, "logs", lines[:1])  # Vercel sent the first line again
    deliver(exporter, "traces", otlp())
    deliver(exporter, "speed_insights", vitals())
    # What the handler counts around each delivery.
    exporter.drains.deliveries.merge(
        {
            ("logs", "accepted"): 2.0,
            ("logs", "bad_signature"): 1.0,
            ("traces", "accepted"): 1.0,
            ("speed_insights", "accepted"): 1.0,
            ("speed_insights", "malformed"): 1.0,
        }
    )
    for name in ("logs", "traces"):
        exporter.drains.endpoints[name].last_received = NOW - 5
    return exporter


async def test_vercel_golden(tmp_path: Path) -> None:
    clock = SimClock(NOW)
    exporter = await exporter_with_data(tmp_path, clock)
    try:
        snapshot = await exporter.snapshot()
        text = render_golden(exporter, snapshot)
        # Rendering is pure: the same snapshot gives the same text again, and later deliveries
        # do not reach a snapshot already taken.
        deliver(exporter, "logs", [{**log_lines()[0], "id": "line-later", "requestId": "r-x"}])
        again = render_golden(exporter, snapshot)
    finally:
        await exporter.aclose()
    assert text == again
    check_golden("vercel", text)
    assert "vercel_up 1.0" in text, "docs failed its last refresh but is still fresh"
    for secret in SECRETS.values():
        assert secret not in text


async def test_a_stale_project_is_left_out_and_makes_vercel_down(tmp_path: Path) -> None:
    clock = SimClock(NOW)
    exporter = await exporter_with_data(tmp_path, clock)
    clock.t = T1 + 301  # docs last refreshed at T1; web at T2, still fresh
    try:
        text = render_golden(exporter, await exporter.snapshot())
    finally:
        await exporter.aclose()
    assert "vercel_up 0.0" in text
    assert 'vercel_deployments_in_progress{project="web",target="production"} 1.0' in text
    gauges = ("vercel_deployments_in_progress", "vercel_deployment_last_ready", "vercel_production")
    assert not [
        line for line in text.splitlines() if line.startswith(gauges) and 'project="docs"' in line
    ]
    assert value(text, "vercel_api_last_success_timestamp_seconds", project="docs") == T1


def test_every_series_the_exporter_declares_is_in_the_golden_file() -> None:
    names = golden_sample_names("vercel")
    # The families every rule, dashboard and doc names (nothing left out by the snapshot).
    assert {
        "vercel_up",
        "vercel_build_info",
        "vercel_scrape_duration_seconds",
        "vercel_api_polling_enabled",
        "vercel_api_requests_total",
        "vercel_api_errors_total",
        "vercel_api_rate_limit_remaining",
        "vercel_api_rate_limit_wait_seconds_total",
        "vercel_api_last_success_timestamp_seconds",
        "vercel_api_refresh_duration_seconds",
        "vercel_api_refreshes_total",
        "vercel_api_records_invalid_total",
        "vercel_deployments_total",
        "vercel_deployments_in_progress",
        "vercel_deployments_vanished_total",
        "vercel_deployment_last_ready_timestamp_seconds",
        "vercel_deployment_build_duration_seconds_bucket",
        "vercel_deployment_queue_duration_seconds_sum",
        "vercel_production_deployment_info",
        "vercel_requests_total",
        "vercel_log_errors_total",
        "vercel_firewall_actions_total",
        "vercel_request_duration_seconds_bucket",
        "vercel_web_vital_seconds_bucket",
        "vercel_web_vital_cls_bucket",
        "vercel_drain_deliveries_total",
        "vercel_drain_records_total",
        "vercel_drain_records_skipped_total",
        "vercel_drain_sample_rate",
        "vercel_drain_last_delivery_timestamp_seconds",
    } <= names
