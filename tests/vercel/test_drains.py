"""The drain endpoints: signatures, framing, gzip, sampling, bounded labels, big batches."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporters.vercel.app import VercelExporter, make_app
from exporters.vercel.drain_body import signature
from fakes.vercel_drains import (
    delivery,
    encode,
    log_records,
    otlp_json,
    otlp_protobuf,
    speed_insights_records,
)
from tests.vercel.helpers import (
    PROJECT_ID,
    SECRETS,
    TOKEN,
    load,
    render,
    samples,
    value,
    write_config,
)

LOGS = SECRETS["logs"]


async def make_client(
    aiohttp_client: Any, tmp_path: Path, **kw: Any
) -> tuple[TestClient, VercelExporter]:
    cfg, secrets = load(write_config(tmp_path, token=False, **kw))
    exporter = VercelExporter(cfg, secrets)
    return await serve(aiohttp_client, exporter), exporter


async def serve(aiohttp_client: Any, exporter: VercelExporter) -> TestClient:
    # As in production (exporters/vercel/cli.py): aiohttp must hand us the bytes Vercel signed.
    server = TestServer(make_app(exporter))
    await server.start_server(auto_decompress=False, lingering_time=2.0)
    client: TestClient = await aiohttp_client(server)
    return client


@pytest.fixture
async def rig(
    aiohttp_client: Any, tmp_path: Path
) -> AsyncIterator[tuple[TestClient, VercelExporter]]:
    return await make_client(aiohttp_client, tmp_path)


def metrics(e: VercelExporter) -> str:
    return render(e).decode()


def total(text: str, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and want <= ls)


def test_signature_matches_vercels_documented_vectors() -> None:
    assert signature(b"secret", b'{"a":1}') == "f8446672f033e4b2beafc5ca3a71eafcd2cafb6e"
    body = b'[{"schema":"vercel.speed_insights.v1","timestamp":"2026-05-04T10:15:00.000Z","projectId":"prj_fake","ownerId":"team_fake","deviceId":12345,"metricType":"TTFB","value":412.3,"origin":"https://example.com","path":"/api/users/42","route":"/api/users/[id]"}]'
    assert signature(b"drain_secret", body) == "8016234aff16781c01b2c5ae402140da91b7a5cf"


@pytest.mark.parametrize(
    ("fmt", "gz"), [("json", False), ("ndjson", False), ("json", True), ("ndjson", True)]
)
async def test_log_batches_are_counted_in_every_framing(
    rig: tuple[TestClient, VercelExporter], fmt: str, gz: bool
) -> None:
    client, e = rig
    records = log_records(300, PROJECT_ID)
    body, headers = delivery(
        encode(records, fmt), LOGS, content_type="application/json", gzipped=gz
    )
    resp = await client.post("/drains/logs", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["x-vercel-verify"] == SECRETS["verify_code"]
    text = metrics(e)
    with_proxy = [r for r in records if r["proxy"]["statusCode"] != -1]
    assert total(text, "vercel_requests_total") == len(with_proxy)
    errors_5xx = sum(1 for r in with_proxy if r["proxy"]["statusCode"] >= 500)
    assert total(text, "vercel_requests_total", status_class="5xx") == errors_5xx
    hits = sum(1 for r in with_proxy if r["proxy"]["vercelCache"] == "HIT")
    assert total(text, "vercel_requests_total", cache="HIT") == hits
    assert total(text, "vercel_log_errors_total", level="error") == sum(
        1 for r in records if r["level"] == "error"
    )
    assert value(text, "vercel_drain_deliveries_total", drain="logs", outcome="accepted") == 1


async def test_gzip_signed_over_the_compressed_bytes_is_accepted(
    rig: tuple[TestClient, VercelExporter],
) -> None:
    client, e = rig
    plain = encode(log_records(10, PROJECT_ID), "json")
    # Signed over the plain body, sent compressed: the other reading of Vercel's docs.
    zipped = gzip.compress(plain)
    headers = {"Content-Encoding": "gzip", "x-vercel-signature": signature(LOGS.encode(), plain)}
    resp = await client.post("/drains/logs", data=zipped, headers=headers)
    assert resp.status == 200
    assert total(metrics(e), "vercel_requests_total") == 10


async def test_bad_signature_is_403_counted_and_changes_nothing(
    rig: tuple[TestClient, VercelExporter],
) -> None:
    client, e = rig
    body = encode(log_records(10, PROJECT_ID), "json")
    for sig in (signature(b"wrong", body), "", "zz" * 20, signature(LOGS.encode(), body + b" ")):
        resp = await client.post(
            "/drains/logs", data=body, headers={"x-vercel-signature": sig} if sig else {}
        )
        assert resp.status == 403
        assert await resp.json() == {"code": "invalid_signature", "error": "signature didn't match"}
        assert resp.headers["x-vercel-verify"] == SECRETS["verify_code"]
    text = metrics(e)
    assert value(text, "vercel_drain_deliveries_total", drain="logs", outcome="bad_signature") == 4
    assert total(text, "vercel_requests_total") == 0
    assert value(text, "vercel_drain_records_total", drain="logs") == 0


@pytest.mark.parametrize(
    "body",
    [
        b'[{"projectId": 1},',  # truncated array
        b'{"a": 1}\n{broken',  # NDJSON with a bad line
        b"[1, 2]",  # not objects
        b'"just a string"',
        b"\x1f\x8b\x08\x00garbage",  # bad gzip
    ],
)
async def test_malformed_bodies_are_400_and_nothing_is_half_counted(
    rig: tuple[TestClient, VercelExporter], body: bytes
) -> None:
    client, e = rig
    good = log_records(1, PROJECT_ID)[0]
    body = body.replace(b'{"a": 1}', json.dumps(good).encode())
    resp = await client.post(
        "/drains/logs", data=body, headers={"x-vercel-signature": signature(LOGS.encode(), body)}
    )
    assert resp.status == 400
    reason = (await resp.json())["error"]
    assert reason
    assert LOGS not in reason
    text = metrics(e)
    assert value(text, "vercel_drain_deliveries_total", drain="logs", outcome="malformed") == 1
    assert total(text, "vercel_requests_total") == 0


async def test_bodies_over_the_limit_are_413_and_gzip_bombs_too(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, e = await make_client(aiohttp_client, tmp_path, drains={"max_body_bytes": 64 * 1024})
    big = encode(log_records(400, PROJECT_ID), "json")
    assert len(big) > 64 * 1024
    body, headers = delivery(big, LOGS, content_type="application/json")
    assert (await client.post("/drains/logs", data=body, headers=headers)).status == 413
    bomb, headers = delivery(
        b"[" + b" " * (10 * 1024 * 1024) + b"]", LOGS, content_type="application/json", gzipped=True
    )
    assert len(bomb) < 64 * 1024
    assert (await client.post("/drains/logs", data=bomb, headers=headers)).status == 413
    assert (
        value(metrics(e), "vercel_drain_deliveries_total", drain="logs", outcome="too_large") == 2
    )


async def test_duplicate_request_ids_and_revalidations_are_not_requests(
    rig: tuple[TestClient, VercelExporter],
) -> None:
    client, e = rig
    rec = log_records(1, PROJECT_ID)[0]
    line2 = {**rec, "id": "other-line", "message": "second log line of the same request"}
    reval = {
        **rec,
        "id": "reval-line",
        "requestId": "r-2",
        "proxy": {**rec["proxy"], "statusCode": -1},
    }
    body, headers = delivery(
        encode([rec, line2, reval], "ndjson"), LOGS, content_type="application/x-ndjson"
    )
    assert (await client.post("/drains/logs", data=body, headers=headers)).status == 200
    # A later line of the same request is a duplicate request; the same line again is a replay.
    line3 = {**rec, "id": "third-line"}
    body, headers = delivery(encode([line3, rec], "json"), LOGS, content_type="application/json")
    assert (await client.post("/drains/logs", data=body, headers=headers)).status == 200
    text = metrics(e)
    assert total(text, "vercel_requests_total") == 1
    assert value(text, "vercel_drain_records_skipped_total", drain="logs", reason="duplicate") == 2
    assert value(text, "vercel_drain_records_skipped_total", drain="logs", reason="replay") == 1
    assert (
        value(text, "vercel_drain_records_skipped_total", drain="logs", reason="revalidation") == 1
    )


async def test_sample_rate_scales_counts_and_is_exported(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, e = await make_client(
        aiohttp_client, tmp_path, sample_rates={"logs": 0.25, "traces": 0.5}
    )
    body, headers = delivery(
        encode(log_records(100, PROJECT_ID), "json"), LOGS, content_type="application/json"
    )
    assert (await client.post("/drains/logs", data=body, headers=headers)).status == 200
    tbody, theaders = delivery(
        json.dumps(otlp_json(10, PROJECT_ID)).encode(),
        SECRETS["traces"],
        content_type="application/json",
    )
    assert (await client.post("/drains/traces", data=tbody, headers=theaders)).status == 200
    text = metrics(e)
    assert total(text, "vercel_requests_total") == 400
    assert value(text, "vercel_drain_records_total", drain="logs") == 100
    assert value(text, "vercel_drain_sample_rate", drain="logs") == 0.25
    assert total(text, "vercel_request_duration_seconds_count") == 20


async def test_traces_in_json_and_protobuf_give_the_same_histograms(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    results = []
    for i, kind in enumerate(("json", "protobuf")):
        client, e = await make_client(aiohttp_client, tmp_path / str(i))
        now_ns = 1_780_000_000_000_000_000
        if kind == "json":
            raw, ctype = (
                json.dumps(otlp_json(50, PROJECT_ID, now_ns=now_ns)).encode(),
                "application/json",
            )
        else:
            raw, ctype = otlp_protobuf(50, PROJECT_ID, now_ns=now_ns), "application/x-protobuf"
        body, headers = delivery(raw, SECRETS["traces"], content_type=ctype)
        resp = await client.post("/v1/traces", data=body, headers=headers)
        assert resp.status == 200
        assert resp.content_type == ctype
        text = metrics(e)
        results.append(
            {k: v for k, v in samples(text).items() if k[0].startswith("vercel_request_duration")}
        )
    assert results[0] == results[1]
    # 50 SERVER spans (the CLIENT fetch spans in the JSON are not requests).
    assert sum(v for (n, _), v in results[0].items() if n.endswith("_count")) == 50


async def test_trace_span_fields_map_to_bounded_labels(
    rig: tuple[TestClient, VercelExporter],
) -> None:
    client, e = rig
    doc = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "vercel.projectId", "value": {"stringValue": PROJECT_ID}},
                        {"key": "cloud.region", "value": {"stringValue": "fra1"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            # Vercel's own doc example: kind as a string, no attributes.
                            {
                                "traceId": "7bba9f33312b3dbb8b2c2c62bb7abe2d",
                                "spanId": "086e83747d0e381e",
                                "name": "GET /api/users",
                                "kind": "server",
                                "startTimeUnixNano": "1694723400000000000",
                                "endTimeUnixNano": "1694723400150000000",
                            },
                            {
                                "name": "GET /checkout",
                                "kind": 2,
                                "startTimeUnixNano": 1694723400000000000,
                                "endTimeUnixNano": 1694723402500000000,
                                "status": {"code": 2},
                            },
                            {
                                "name": "backwards",
                                "kind": 2,
                                "startTimeUnixNano": "1694723400000000000",
                                "endTimeUnixNano": "1694723300000000000",
                            },
                        ]
                    }
                ],
            }
        ]
    }
    body, headers = delivery(
        json.dumps(doc).encode(), SECRETS["traces"], content_type="application/json"
    )
    assert (await client.post("/drains/traces", data=body, headers=headers)).status == 200
    text = metrics(e)
    base = {"project": "web", "environment": "unknown", "region": "fra1"}
    assert value(
        text,
        "vercel_request_duration_seconds_sum",
        **base,
        route_kind="api",
        status_class="unknown",
    ) == pytest.approx(0.15)
    assert value(
        text, "vercel_request_duration_seconds_sum", **base, route_kind="page", status_class="error"
    ) == pytest.approx(2.5)
    assert value(text, "vercel_drain_records_skipped_total", drain="traces", reason="bad_time") == 1


async def test_speed_insights_become_web_vitals_with_bounded_routes(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, e = await make_client(
        aiohttp_client, tmp_path, drains={"max_routes": 2, "routes": ["/pinned"]}
    )
    base = {
        "schema": "vercel.speed_insights.v1",
        "projectId": PROJECT_ID,
        "country": "DE",
        "deviceType": "mobile",
        "vercelEnvironment": "production",
    }
    recs = [
        {
            **base,
            "metricType": "LCP",
            "value": 2140,
            "route": "/blog/[slug]",
            "path": "/blog/hello",
        },
        {**base, "metricType": "LCP", "value": 1000, "route": "/a"},
        {**base, "metricType": "LCP", "value": 1000, "route": "/b"},  # third route: over the limit
        {**base, "metricType": "LCP", "value": 1000, "route": "/pinned"},
        {**base, "metricType": "CLS", "value": 0.04, "route": "/a"},
        {**base, "metricType": "TTFB", "value": "fast", "route": "/a"},
        {**base, "metricType": "XYZ", "value": 1, "route": "/a"},
        {"schema": "vercel.analytics.v2", "eventType": "pageview"},
        # A preview deployment's vitals are kept apart; without the field, "unknown".
        {**base, "metricType": "LCP", "value": 9000, "route": "/a", "vercelEnvironment": "preview"},
        {**base, "metricType": "LCP", "value": 8000, "route": "/a", "vercelEnvironment": None},
    ]
    body, headers = delivery(
        encode(recs, "json"), SECRETS["speed_insights"], content_type="application/json"
    )
    assert (await client.post("/drains/speed-insights", data=body, headers=headers)).status == 200
    text = metrics(e)
    lbl = {
        "project": "web",
        "environment": "production",
        "device": "mobile",
        "geo": "eu",
        "metric": "LCP",
    }
    assert value(
        text, "vercel_web_vital_seconds_sum", **lbl, route="/blog/[slug]"
    ) == pytest.approx(2.14)
    assert value(text, "vercel_web_vital_seconds_count", **lbl, route="/a") == 1
    assert value(text, "vercel_web_vital_seconds_count", **lbl, route="other") == 1
    assert value(text, "vercel_web_vital_seconds_count", **lbl, route="/pinned") == 1
    for env, seconds in (("preview", 9.0), ("unknown", 8.0)):
        assert value(
            text, "vercel_web_vital_seconds_sum", **{**lbl, "environment": env}, route="/a"
        ) == pytest.approx(seconds)
    assert value(
        text,
        "vercel_web_vital_cls_sum",
        project="web",
        environment="production",
        device="mobile",
        geo="eu",
        route="/a",
    ) == pytest.approx(0.04)
    skipped = {
        r: value(text, "vercel_drain_records_skipped_total", drain="speed_insights", reason=r)
        for r in ("bad_value", "metric", "schema")
    }
    assert skipped == {"bad_value": 1, "metric": 1, "schema": 1}


async def test_no_raw_path_ip_request_or_deployment_id_reaches_a_label(
    rig: tuple[TestClient, VercelExporter],
) -> None:
    client, e = rig
    records = log_records(200, PROJECT_ID)
    for r in records[:50]:
        r["projectId"] = "prj_someone_else"
        r["proxy"]["region"] = "<script>"
    body, headers = delivery(encode(records, "json"), LOGS, content_type="application/json")
    assert (await client.post("/drains/logs", data=body, headers=headers)).status == 200
    vitals = speed_insights_records(100, PROJECT_ID)
    body, headers = delivery(
        encode(vitals, "ndjson"), SECRETS["speed_insights"], content_type="application/x-ndjson"
    )
    assert (await client.post("/drains/speed-insights", data=body, headers=headers)).status == 200
    label_values = {v for (_, ls) in samples(metrics(e)) for _, v in ls}
    forbidden = {r["proxy"]["path"] for r in records} | {r["proxy"]["clientIp"] for r in records}
    forbidden |= (
        {r["requestId"] for r in records}
        | {r["deploymentId"] for r in records}
        | {v["path"] for v in vitals}
    )
    forbidden -= {v["route"] for v in vitals}  # "/" and "/dashboard" are both a path and a template
    assert not label_values & forbidden
    assert {"unlisted", "other"} <= label_values


async def test_verification_probe_and_unconfigured_drains(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, _e = await make_client(aiohttp_client, tmp_path)
    resp = await client.get("/drains/logs")
    assert resp.status == 200
    assert resp.headers["x-vercel-verify"] == SECRETS["verify_code"]
    cfg, secrets = load(write_config(tmp_path / "x", token=False, drains={"traces": None}))
    client2 = await serve(aiohttp_client, VercelExporter(cfg, secrets))
    resp = await client2.post("/drains/traces", data=b"{}")
    assert resp.status == 404


async def test_a_huge_batch_does_not_block_metrics(
    rig: tuple[TestClient, VercelExporter], caplog: pytest.LogCaptureFixture
) -> None:
    client, e = rig
    caplog.set_level(logging.DEBUG)
    records = log_records(50_000, PROJECT_ID)
    raw = encode(records, "ndjson")
    assert len(raw) > 10 * 1024 * 1024
    body, headers = delivery(raw, LOGS, content_type="application/x-ndjson")
    post = asyncio.create_task(client.post("/drains/logs", data=io.BytesIO(body), headers=headers))
    scrapes = 0
    while not post.done():
        resp = await client.get("/metrics")
        assert resp.status == 200
        scrapes += 1
        await asyncio.sleep(0.01)
    resp = await post
    assert resp.status == 200
    assert scrapes >= 2, "metrics were served while the batch was processed"
    assert total(metrics(e), "vercel_requests_total") == 50_000
    for blob in (caplog.text, metrics(e)):
        assert LOGS not in blob
        assert TOKEN not in blob
