"""Vercel drain deliveries, shaped per ../shared/apis.md §2.1 and §6, signed like Vercel signs them.

`log_records`, `otlp_json`, `otlp_protobuf` and `speed_insights_records` build realistic
batches; `sign` is Vercel's x-vercel-signature (hex HMAC-SHA1 of the body); `Sender` posts
them to an exporter as Vercel would (User-Agent VercelDrain/1.0, JSON array or NDJSON,
optionally gzip). Error and latency mix follow a `mode` (ok, slow, error) so the demo's
platform faults show up in the drain-fed alerts too.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

USER_AGENT = "VercelDrain/1.0 (+https://vercel.com/docs/drains)"
REGIONS = ("iad1", "fra1", "cdg1", "sfo1")
ROUTES = (
    ("/", "prerender"),
    ("/dashboard", "func"),
    ("/blog/[slug]", "prerender"),
    ("/api/users/[id]", "func"),
    ("/api/health", "func"),
    ("/_next/static/chunk.js", "static"),
)
COUNTRIES = ("US", "DE", "GB", "FR", "JP", "BR", "IN")


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def _status(rng: random.Random, mode: str) -> int:
    if mode == "error" and rng.random() < 0.3:
        return 503
    r = rng.random()
    # Healthy: a 500 now and then (0.05 %, far under the 1 % alert) and some 404s.
    return 500 if r < 0.0005 else 404 if r < 0.01 else 200


def log_records(
    n: int, project_id: str, *, mode: str = "ok", seed: int = 1, now_ms: int | None = None
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    now_ms = now_ms or int(time.time() * 1000)
    out = []
    for i in range(n):
        path, path_type = rng.choice(ROUTES)
        region = rng.choice(REGIONS)
        status = _status(rng, mode)
        cache = "HIT" if path_type in ("prerender", "static") and rng.random() < 0.97 else "MISS"
        rid = f"{region}::{rng.getrandbits(48):012x}-{now_ms}-{i}"
        rec: dict[str, Any] = {
            "id": f"{now_ms}{i:08d}",
            "deploymentId": "dpl_2YZzo1cJAjijSf1hwDFK5ayu2Pid",
            "source": "lambda" if path_type == "func" else "static",
            "host": "web-abc123-acme.vercel.app",
            "timestamp": now_ms - rng.randint(0, 5000),
            "projectId": project_id,
            "level": "error" if status >= 500 else "info",
            "message": "request handled" if status < 500 else "Error: upstream timeout",
            "requestId": rid,
            "statusCode": status,
            "path": path,
            "environment": "production",
            "projectName": "web",
            "executionRegion": region,
            "proxy": {
                "timestamp": now_ms,
                "method": "GET",
                "host": "app.example.com",
                "path": path.replace("[slug]", "hello").replace("[id]", str(rng.randint(1, 9999)))
                + "?utm=x",
                "userAgent": ["Mozilla/5.0 (demo)"],
                "region": region,
                "statusCode": status,
                "clientIp": f"203.0.113.{rng.randint(1, 254)}",
                "scheme": "https",
                "responseByteSize": rng.randint(200, 90000),
                "pathType": path_type,
                "vercelCache": cache,
                "vercelId": rid,
            },
        }
        if rng.random() < 0.002:
            rec["proxy"]["wafAction"] = "deny"
        out.append(rec)
    return out


def speed_insights_records(
    n: int, project_id: str, *, mode: str = "ok", seed: int = 2
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    slow = 3.0 if mode == "slow" else 1.0
    typical = {"LCP": 1400, "FCP": 900, "TTFB": 250, "INP": 120, "CLS": 0.05}
    out = []
    for _ in range(n):
        metric = rng.choice(list(typical))
        value = typical[metric] * rng.lognormvariate(0, 0.5) * (1 if metric == "CLS" else slow)
        route = rng.choice(ROUTES[:4])[0]
        out.append(
            {
                "schema": "vercel.speed_insights.v1",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "projectId": project_id,
                "ownerId": "team_fake",
                "deviceId": rng.randint(1, 99999),
                "metricType": metric,
                "value": round(value, 4),
                "origin": "https://app.example.com",
                "path": route.replace("[slug]", "hello").replace("[id]", "42"),
                "route": route,
                "country": rng.choice(COUNTRIES),
                "deviceType": rng.choice(("desktop", "mobile", "mobile", "tablet")),
                "vercelEnvironment": "production",
                "deploymentId": "dpl_2YZzo1cJAjijSf1hwDFK5ayu2Pid",
            }
        )
    return out


def _span_facts(
    n: int, *, mode: str, seed: int, now_ns: int
) -> list[tuple[str, str, int, int, int]]:
    """(region, route, status, start_ns, end_ns) for `n` request spans."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        route = rng.choice(ROUTES[:5])[0]
        base = 0.12 if route.startswith("/api/") else 0.35
        seconds = base * rng.lognormvariate(0, 0.4) * (8.0 if mode == "slow" else 1.0)
        start = now_ns - rng.randint(0, 5_000_000_000)
        out.append(
            (rng.choice(REGIONS), route, _status(rng, mode), start, start + int(seconds * 1e9))
        )
    return out


def _resource(project_id: str, region: str) -> list[tuple[str, str]]:
    return [
        ("service.name", "web"),
        ("vercel.projectId", project_id),
        ("vercel.deploymentId", "dpl_2YZzo1cJAjijSf1hwDFK5ayu2Pid"),
        ("cloud.provider", "vercel"),
        ("cloud.region", region),
        ("deployment.environment.name", "production"),
    ]


def otlp_json(
    n: int, project_id: str, *, mode: str = "ok", seed: int = 3, now_ns: int | None = None
) -> dict[str, Any]:
    now_ns = now_ns or time.time_ns()
    resource_spans = []
    for region, route, status, start, end in _span_facts(n, mode=mode, seed=seed, now_ns=now_ns):
        attrs = [
            {"key": "http.method", "value": {"stringValue": "GET"}},
            {"key": "http.route", "value": {"stringValue": route}},
            {"key": "http.status_code", "value": {"intValue": str(status)}},
        ]
        resource_spans.append(
            {
                "resource": {
                    "attributes": [
                        {"key": k, "value": {"stringValue": v}}
                        for k, v in _resource(project_id, region)
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "next.js", "version": "15.3.0"},
                        "spans": [
                            {
                                "traceId": f"{start:032x}"[-32:],
                                "spanId": f"{end:016x}"[-16:],
                                "name": f"GET {route}",
                                "kind": 2,
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(end),
                                "attributes": attrs,
                                "status": {"code": 2 if status >= 500 else 0},
                            },
                            {
                                "traceId": f"{start:032x}"[-32:],
                                "spanId": f"{start:016x}"[-16:],
                                "name": "fetch GET https://db.example.com/rest",
                                "kind": 3,
                                "startTimeUnixNano": str(start + 1000),
                                "endTimeUnixNano": str(start + 2000),
                            },
                        ],
                    }
                ],
            }
        )
    return {"resourceSpans": resource_spans}


def otlp_protobuf(
    n: int, project_id: str, *, mode: str = "ok", seed: int = 3, now_ns: int | None = None
) -> bytes:
    now_ns = now_ns or time.time_ns()
    req = ExportTraceServiceRequest()
    for region, route, status, start, end in _span_facts(n, mode=mode, seed=seed, now_ns=now_ns):
        rs = req.resource_spans.add()
        for k, v in _resource(project_id, region):
            a = rs.resource.attributes.add()
            a.key = k
            a.value.string_value = v
        sp = rs.scope_spans.add().spans.add()
        sp.trace_id = start.to_bytes(16, "big")
        sp.span_id = (end & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
        sp.name = f"GET {route}"
        sp.kind = Span.SPAN_KIND_SERVER
        sp.start_time_unix_nano = start
        sp.end_time_unix_nano = end
        for k, val in (("http.route", route), ("http.method", "GET")):
            a = sp.attributes.add()
            a.key = k
            a.value.string_value = val
        a = sp.attributes.add()
        a.key = "http.status_code"
        a.value.int_value = status
        if status >= 500:
            sp.status.code = Status.STATUS_CODE_ERROR
    return req.SerializeToString()


def encode(records: Sequence[dict[str, Any]], fmt: str) -> bytes:
    if fmt == "ndjson":
        return b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
    return json.dumps(list(records), separators=(",", ":")).encode()


def delivery(
    body: bytes, secret: str, *, content_type: str, gzipped: bool = False
) -> tuple[bytes, dict[str, str]]:
    """The bytes and headers of one delivery (signature over the bytes sent)."""
    headers = {"Content-Type": content_type, "User-Agent": USER_AGENT}
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    headers["x-vercel-signature"] = sign(secret, body)
    return body, headers


class Sender:
    """Posts a round of log, trace and Speed Insights deliveries to an exporter's drains."""

    def __init__(self, base_url: str, secrets: dict[str, str], project_id: str) -> None:
        self.base = base_url.rstrip("/")
        self.secrets = secrets
        self.project_id = project_id
        self.round = 0

    def send_round(self, client: httpx.Client, mode: str, per_round: int = 200) -> dict[str, int]:
        self.round += 1
        seed = self.round
        codes = {}
        logs = log_records(per_round, self.project_id, mode=mode, seed=seed)
        fmt = "ndjson" if self.round % 2 else "json"
        body, headers = delivery(
            encode(logs, fmt),
            self.secrets["logs"],
            content_type="application/x-ndjson" if fmt == "ndjson" else "application/json",
            gzipped=self.round % 3 == 0,
        )
        codes["logs"] = client.post(
            f"{self.base}/drains/logs", content=body, headers=headers
        ).status_code
        if self.round % 2:
            tbody = otlp_protobuf(per_round // 4, self.project_id, mode=mode, seed=seed)
            body, headers = delivery(
                tbody, self.secrets["traces"], content_type="application/x-protobuf"
            )
        else:
            tdoc = otlp_json(per_round // 4, self.project_id, mode=mode, seed=seed)
            body, headers = delivery(
                json.dumps(tdoc).encode(), self.secrets["traces"], content_type="application/json"
            )
        codes["traces"] = client.post(
            f"{self.base}/v1/traces", content=body, headers=headers
        ).status_code
        vitals = speed_insights_records(per_round // 4, self.project_id, mode=mode, seed=seed)
        body, headers = delivery(
            encode(vitals, "json"), self.secrets["speed_insights"], content_type="application/json"
        )
        codes["speed_insights"] = client.post(
            f"{self.base}/drains/speed-insights", content=body, headers=headers
        ).status_code
        return codes
