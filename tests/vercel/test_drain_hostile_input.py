"""Every drain endpoint against hostile input: a 4xx with a short reason and a counter by reason,
never a 5xx or a traceback, nothing half-counted. Signatures are checked before a body is read
whole: an unsigned post is refused unread, a wrongly signed one never waits for the drain's lock.
Labels stay within Vercel's vocabulary, and a replayed log delivery does not count twice."""

from __future__ import annotations

import asyncio
import copy
import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters.vercel.app import VercelExporter
from exporters.vercel.drain_body import MAX_STRING
from exporters.vercel.log_drain import ID_TTL, RecentIds
from fakes.vercel_drains import (
    encode,
    log_records,
    otlp_json,
    otlp_protobuf,
    sign,
    speed_insights_records,
)
from tests.http_raw import raw_post
from tests.vercel.helpers import PROJECT_ID, SECRETS, SimClock, load, samples, write_config
from tests.vercel.test_drains import metrics, serve, total

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
# endpoint -> (path, drain, a valid document)
ENDPOINTS: dict[str, tuple[str, str, Callable[[], Any]]] = {
    "logs": ("/drains/logs", "logs", lambda: log_records(3, PROJECT_ID, now_ms=1_780_000_000_000)),
    "traces": ("/v1/traces", "traces", lambda: otlp_json(2, PROJECT_ID, now_ns=1_780 * 10**15)),
    "speed_insights": (
        "/drains/speed-insights",
        "speed_insights",
        lambda: speed_insights_records(3, PROJECT_ID),
    ),
}
SERIES = (
    "vercel_requests_total",
    "vercel_log_errors_total",
    "vercel_request_duration_seconds_count",
    "vercel_web_vital_seconds_count",
    "vercel_web_vital_cls_count",
    "vercel_drain_records_total",
)


async def post(client: TestClient, path: str, body: bytes, headers: dict[str, str]) -> Any:
    # aiohttp warns (an error here) about big raw-bytes bodies: hand it a stream.
    return await client.post(path, data=io.BytesIO(body), headers=headers)


def signed(drain: str, body: bytes, content_type: str = JSON) -> dict[str, str]:
    return {"Content-Type": content_type, "x-vercel-signature": sign(SECRETS[drain], body)}


async def make(aiohttp_client: Any, tmp_path: Path, **kw: Any) -> tuple[TestClient, VercelExporter]:
    clock = kw.pop("clock", None)
    cfg, secrets = load(write_config(tmp_path, token=False, **kw))
    exporter = VercelExporter(cfg, secrets, **({"clock": clock} if clock else {}))
    return await serve(aiohttp_client, exporter), exporter


@pytest.fixture
async def rig(aiohttp_client: Any, tmp_path: Path) -> tuple[TestClient, VercelExporter]:
    return await make(aiohttp_client, tmp_path)


def outcome(e: VercelExporter, drain: str, name: str) -> float:
    key = ("vercel_drain_deliveries_total", frozenset({("drain", drain), ("outcome", name)}))
    return samples(metrics(e)).get(key, 0.0)


def counted(e: VercelExporter) -> dict[str, float]:
    text = metrics(e)
    return {name: total(text, name) for name in SERIES}


# -- every kind of bad body, on every endpoint --------------------------------------------------


def _first_record(endpoint: str, doc: Any) -> dict[str, Any]:
    """Where a field is grafted: a record, or (traces) the first span."""
    if endpoint == "traces":
        span: dict[str, Any] = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        return span
    record: dict[str, Any] = doc[0]
    return record


def _graft(endpoint: str, **fields: Any) -> bytes:
    doc = ENDPOINTS[endpoint][2]()
    _first_record(endpoint, doc).update(fields)
    return json.dumps(doc).encode()


def _raw_graft(endpoint: str, raw: str) -> bytes:
    """Insert raw JSON text (what json.dumps would never write) into the first record."""
    text = _graft(endpoint, hostile="HOSTILE").decode()
    return text.replace('"HOSTILE"', raw, 1).encode()


# A time field per endpoint, written as the drain writes it, that overflows / underflows UTC.
TIMES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "logs": ({"timestamp": 253_402_300_800_000}, {"timestamp": -62_135_596_800_001}),
    "traces": ({"endTimeUnixNano": str(2**64)}, {"startTimeUnixNano": "-1"}),
    "speed_insights": (
        {"timestamp": "9999-12-31T23:30:00-05:00"},
        {"timestamp": "0001-01-01T00:10:00+05:00"},
    ),
}
# A number field each drain reads, holding an integer beyond 64 bits.
BIG_INT = {
    "logs": {"timestamp": 10**30},
    "traces": {"startTimeUnixNano": "9" * 30},
    "speed_insights": {"value": 10**30},
}


def hostile(endpoint: str) -> dict[str, tuple[bytes, str]]:
    """Each kind of bad input, grafted onto a valid body: (body, the outcome expected)."""
    overflow, underflow = TIMES[endpoint]
    return {
        "nul_in_string": (_graft(endpoint, hostile="a\x00b"), "bad_string"),
        "nul_in_key": (_graft(endpoint, **{"a\x00": 1}), "bad_string"),
        "lone_surrogate": (_graft(endpoint, hostile="\ud800x"), "bad_string"),
        "long_string": (_graft(endpoint, hostile="x" * (MAX_STRING + 1)), "bad_string"),
        "nan_literal": (_raw_graft(endpoint, "NaN"), "malformed"),
        "infinity_literal": (_raw_graft(endpoint, "-Infinity"), "malformed"),
        "int_overflow": (_graft(endpoint, **BIG_INT[endpoint]), "out_of_range"),
        "int_beyond_parsing": (_raw_graft(endpoint, "9" * 5000), "malformed"),
        "timestamp_overflow": (_graft(endpoint, **overflow), "out_of_range"),
        "timestamp_underflow": (_graft(endpoint, **underflow), "out_of_range"),
        "deep_nesting": (_raw_graft(endpoint, "[" * 5000 + "]" * 5000), "malformed"),
        "not_utf8": (
            _raw_graft(endpoint, '"\xff\xfe"').replace(b"\xc3\xbf\xc3\xbe", b"\xff\xfe"),
            "malformed",
        ),
        "encoded_surrogate": (
            _raw_graft(endpoint, '"\\u0041"').replace(b"\\u0041", b"\xed\xa0\x80"),
            "malformed",
        ),
        "not_json": (b"\xff\xfe not json at all \x00", "malformed"),
    }


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
async def test_every_kind_of_bad_body_is_a_4xx_with_a_reason_and_a_counter(
    rig: tuple[TestClient, VercelExporter], endpoint: str
) -> None:
    client, e = rig
    path, drain, _ = ENDPOINTS[endpoint]
    before = counted(e)
    for kind, (body, want) in hostile(endpoint).items():
        n = outcome(e, drain, want)
        resp = await post(client, path, body, signed(drain, body))
        text = await resp.text()
        assert resp.status in (400, 413), (kind, resp.status, text)
        assert "Traceback" not in text
        doc = json.loads(text)
        assert doc["code"] == want, (kind, doc)
        assert 0 < len(doc["error"]) <= 200, (kind, doc)
        assert SECRETS[drain] not in text
        assert outcome(e, drain, want) == n + 1, kind
    assert counted(e) == before  # nothing half-counted
    # And the valid body it was all grafted onto is accepted.
    body = json.dumps(ENDPOINTS[endpoint][2]()).encode()
    assert (await post(client, path, body, signed(drain, body))).status == 200


async def test_protobuf_traces_refuse_nul_long_strings_and_bad_bytes(
    rig: tuple[TestClient, VercelExporter],
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    client, e = rig
    good = otlp_protobuf(3, PROJECT_ID)
    cases: dict[str, tuple[bytes, str]] = {"not_protobuf": (b"\xff" * 40, "malformed")}
    for kind, value in (("nul", "a\x00b"), ("long", "x" * (MAX_STRING + 1))):
        req = ExportTraceServiceRequest.FromString(good)
        attr = req.resource_spans[0].resource.attributes.add()
        attr.key, attr.value.string_value = "hostile", value
        cases[kind] = (req.SerializeToString(), "bad_string")
    # protobuf's own UTF-8 check: an encoded surrogate in a string field.
    req = ExportTraceServiceRequest.FromString(good)
    req.resource_spans[0].scope_spans[0].spans[0].name = "SURROGATE"
    cases["surrogate"] = (
        req.SerializeToString().replace(b"SURROGATE", b"\xed\xa0\x80xxxxxx"),
        "malformed",
    )
    for kind, (body, want) in cases.items():
        resp = await post(client, "/v1/traces", body, signed("traces", body, PROTOBUF))
        assert resp.status == 400, kind
        assert (await resp.json())["code"] == want, kind
    assert total(metrics(e), "vercel_request_duration_seconds_count") == 0
    resp = await post(client, "/v1/traces", good, signed("traces", good, PROTOBUF))
    assert resp.status == 200


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize(
    "value",
    [
        b"\xff\xfe\xfd",
        "tök€n".encode(),
        b"\xc3\x28" * 20,
        "é".encode() * 20,
        b"zz" * 20,
        b"0" * 41,
        b"sha1=" + b"0" * 40,
        b"",
    ],
)
async def test_non_utf8_non_ascii_or_non_hex_signature_headers_are_403(
    rig: tuple[TestClient, VercelExporter], endpoint: str, value: bytes
) -> None:
    client, e = rig
    path, drain, make_doc = ENDPOINTS[endpoint]
    body = json.dumps(make_doc()).encode()
    headers = [b"Content-Type: application/json", b"x-vercel-signature: " + value]
    assert await raw_post(client, path, headers, body) == 403
    assert outcome(e, drain, "bad_signature") == 1
    assert counted(e)["vercel_drain_records_total"] == 0


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
async def test_wrong_content_types_are_415(
    rig: tuple[TestClient, VercelExporter], endpoint: str
) -> None:
    client, e = rig
    path, drain, make_doc = ENDPOINTS[endpoint]
    body = json.dumps(make_doc()).encode()
    wrong = [
        "text/html",
        "application/xml",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
    ]
    if endpoint == "traces":
        wrong += ["text/plain", "application/octet-stream", "application/x-ndjson"]
    for ctype in wrong:
        resp = await post(client, path, body, signed(drain, body, ctype))
        assert resp.status == 415, ctype
        assert (await resp.json())["code"] == "unsupported_media_type"
    assert outcome(e, drain, "unsupported_media_type") == len(wrong)
    assert counted(e)["vercel_drain_records_total"] == 0


# -- signatures before bodies ---------------------------------------------------------------------


async def _status_without_body(client: TestClient, path: str, headers: list[bytes]) -> int:
    """Send only the head of a 10 MB post: the answer must come without the body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = [f"POST {path} HTTP/1.1".encode(), b"Host: x", b"Content-Length: 10000000", *headers]
    writer.write(b"\r\n".join([*head, b"", b""]))
    await writer.drain()
    try:
        line = await asyncio.wait_for(reader.readline(), timeout=5)
    finally:
        writer.close()
    return int(line.split()[1])


async def test_refusals_on_headers_come_before_the_body_is_read(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, e = await make(aiohttp_client, tmp_path, drains={"max_body_bytes": 1 << 20})
    sig = b"x-vercel-signature: " + b"0" * 40
    cases = {
        403: [b"Content-Type: application/json"],  # unsigned
        415: [b"Content-Type: text/html", sig],
        413: [b"Content-Type: application/json", sig],  # over max_body_bytes
    }
    for status, headers in cases.items():
        assert await _status_without_body(client, "/drains/logs", headers) == status
    for name in ("bad_signature", "unsupported_media_type", "too_large"):
        assert outcome(e, "logs", name) == 1


async def test_a_wrongly_signed_body_never_waits_for_the_drains_lock(
    rig: tuple[TestClient, VercelExporter],
) -> None:
    client, e = rig
    body = encode(log_records(4000, PROJECT_ID), "json")  # over a MiB: spooled to a file
    assert len(body) > 1 << 20
    lock = e.drains.endpoints["logs"].lock
    async with lock:  # a delivery being merged holds it
        resp = await asyncio.wait_for(
            post(
                client,
                "/drains/logs",
                body,
                {"Content-Type": JSON, "x-vercel-signature": sign("wrong", body)},
            ),
            timeout=10,
        )
        assert resp.status == 403
        # A signed one waits for it.
        pending = asyncio.create_task(post(client, "/drains/logs", body, signed("logs", body)))
        await asyncio.sleep(0.2)
        assert not pending.done()
    assert (await pending).status == 200
    assert total(metrics(e), "vercel_requests_total") == 4000 - sum(
        1 for r in log_records(4000, PROJECT_ID) if r["proxy"]["statusCode"] == -1
    )


async def test_gzip_signed_over_the_plain_bytes_is_checked_without_keeping_them(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, e = await make(aiohttp_client, tmp_path, drains={"max_body_bytes": 64 * 1024})
    plain = encode(log_records(10, PROJECT_ID), "json")
    ok = gzip.compress(plain)
    bomb_plain = b"[" + b" " * (10 * 1024 * 1024) + b"]"
    cases = [
        (ok, sign(SECRETS["logs"], plain), 200),
        (ok, sign("wrong", plain), 403),
        (gzip.compress(bomb_plain), sign(SECRETS["logs"], bomb_plain), 413),
        (ok[:-12], sign(SECRETS["logs"], plain), 400),  # truncated
    ]
    for body, sig, status in cases:
        headers = {"Content-Type": JSON, "Content-Encoding": "gzip", "x-vercel-signature": sig}
        assert (await post(client, "/drains/logs", body, headers)).status == status
    assert total(metrics(e), "vercel_requests_total") == 10


async def test_chunked_bodies_over_the_limit_are_413_while_streaming(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, e = await make(aiohttp_client, tmp_path, drains={"max_body_bytes": 64 * 1024})

    async def chunks() -> Any:
        for _ in range(100):
            yield b" " * 4096

    resp = await client.post(
        "/drains/logs",
        data=chunks(),
        headers={"Content-Type": JSON, "x-vercel-signature": "0" * 40},
    )
    assert resp.status == 413
    assert outcome(e, "logs", "too_large") == 1


async def test_a_malformed_chunked_body_is_a_4xx(rig: tuple[TestClient, VercelExporter]) -> None:
    client, _e = rig
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /drains/logs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\nx-vercel-signature: " + b"0" * 40 + b"\r\n\r\n"
        b"5\r\n[{}]\r\nzz\r\n\r\n"
    )
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.close()
    assert 400 <= int(line.split()[1]) < 500


# -- arbitrary input ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
KEYS = [
    "id",
    "timestamp",
    "projectId",
    "proxy",
    "requestId",
    "level",
    "environment",
    "statusCode",
    "region",
    "schema",
    "metricType",
    "value",
    "route",
    "vercelEnvironment",
    "resourceSpans",
    "scopeSpans",
    "spans",
    "kind",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "attributes",
]
CONTENT_TYPES = [JSON, "application/x-ndjson", PROTOBUF, "text/plain", "application/xml", ""]


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    endpoint=st.sampled_from(sorted(ENDPOINTS)),
    body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    overlay=st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4),
    content_type=st.sampled_from(CONTENT_TYPES),
    gzipped=st.booleans(),
    signature=st.sampled_from(["good", "none", "wrong"]),
)
async def test_arbitrary_bytes_and_json_never_5xx(
    rig: tuple[TestClient, VercelExporter],
    endpoint: str,
    body: bytes,
    overlay: dict[str, Any],
    content_type: str,
    gzipped: bool,
    signature: str,
) -> None:
    client, _e = rig
    path, drain, make_doc = ENDPOINTS[endpoint]
    doc = make_doc()
    _first_record(endpoint, doc).update(copy.deepcopy(overlay))
    for data in (body, json.dumps(doc).encode()):
        if gzipped:
            data = gzip.compress(data)
        headers = {"Content-Type": content_type} if content_type else {}
        if signature != "none":
            headers["x-vercel-signature"] = sign(
                SECRETS[drain] if signature == "good" else "wrong", data
            )
        resp = await post(client, path, data, headers)
        text = await resp.text()
        assert resp.status < 500, (data[:200], text)
        assert "Traceback" not in text


# -- labels and replays ---------------------------------------------------------------------------


async def test_region_accepts_only_vercels_region_codes(
    rig: tuple[TestClient, VercelExporter],
) -> None:
    client, e = rig
    records = log_records(5, PROJECT_ID)
    for rec, region in zip(records, ["iad1", "xyz9", "us-east-1", "", "<b>"], strict=True):
        rec["proxy"]["region"] = region
        rec["proxy"]["statusCode"] = 200
    body = encode(records, "json")
    assert (await post(client, "/drains/logs", body, signed("logs", body))).status == 200
    doc = otlp_json(1, PROJECT_ID)
    attrs = doc["resourceSpans"][0]["resource"]["attributes"]
    for a in attrs:
        if a["key"] == "cloud.region":
            a["value"]["stringValue"] = "aws-us-east-1"
    body = json.dumps(doc).encode()
    assert (await post(client, "/v1/traces", body, signed("traces", body))).status == 200
    text = metrics(e)
    regions = {dict(ls)["region"] for (n, ls) in samples(text) if "region" in dict(ls)}
    assert regions == {"iad1", "other", "unknown"}
    assert total(text, "vercel_requests_total", region="other") == 3


async def test_a_replayed_log_delivery_counts_once_until_its_ids_expire(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    clock = SimClock()
    client, e = await make(aiohttp_client, tmp_path, clock=clock)
    records = log_records(200, PROJECT_ID)
    body = encode(records, "ndjson")
    for _ in range(2):  # Vercel retries a delivery it thinks failed
        resp = await post(client, "/drains/logs", body, signed("logs", body))
        assert resp.status == 200
    once = counted(e)
    assert once["vercel_requests_total"] == sum(
        1 for r in records if r["proxy"]["statusCode"] != -1
    )
    text = metrics(e)
    skipped = samples(text)[
        ("vercel_drain_records_skipped_total", frozenset({("drain", "logs"), ("reason", "replay")}))
    ]
    assert skipped == 200
    # Re-batched: the same lines among new ones.
    more = log_records(50, PROJECT_ID, seed=9)
    body = encode([*records[:20], *more], "json")
    assert (await post(client, "/drains/logs", body, signed("logs", body))).status == 200
    new = sum(1 for r in more if r["proxy"]["statusCode"] != -1)
    assert counted(e)["vercel_requests_total"] == once["vercel_requests_total"] + new
    # Ids are time-limited: an hour later the same lines are news.
    clock.t += ID_TTL + 1
    body = encode(records, "ndjson")
    assert (await post(client, "/drains/logs", body, signed("logs", body))).status == 200
    assert counted(e)["vercel_requests_total"] == 2 * once["vercel_requests_total"] + new


async def test_a_refused_delivery_leaves_no_ids_that_would_make_its_retry_a_replay(
    rig: tuple[TestClient, VercelExporter],
) -> None:
    client, e = rig
    records = log_records(20, PROJECT_ID)
    bad = copy.deepcopy(records)
    bad[-1]["timestamp"] = 10**20
    body = encode(bad, "json")
    assert (await post(client, "/drains/logs", body, signed("logs", body))).status == 400
    body = encode(records, "json")
    assert (await post(client, "/drains/logs", body, signed("logs", body))).status == 200
    assert counted(e)["vercel_requests_total"] == sum(
        1 for r in records if r["proxy"]["statusCode"] != -1
    )


def test_remembered_ids_are_bounded_in_number_and_time() -> None:
    ids = RecentIds(1000, ttl=60.0)
    for t in range(100):
        for i in range(100):
            ids.remember(f"{t}-{i}", float(t))
        ids.prune(float(t))
        assert len(ids) <= 1250
    assert ids.seen("99-5", 99.0)
    assert not ids.seen("0-5", 99.0)
    ids.prune(1000.0)
    assert len(ids) == 0


async def test_without_a_usable_spool_dir_bodies_stay_in_memory_and_count(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from exporters.vercel import drain_body

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    client, e = await make(aiohttp_client, tmp_path, drains={"spool_dir": str(not_a_dir)})
    records = log_records(4000, PROJECT_ID)
    body = encode(records, "ndjson")
    assert len(body) > 1 << 20
    drain_body.Spool._warned = False
    assert (await post(client, "/drains/logs", body, signed("logs", body))).status == 200
    assert "cannot spool drain bodies to disk" in caplog.text
    assert counted(e)["vercel_requests_total"] == sum(
        1 for r in records if r["proxy"]["statusCode"] != -1
    )
