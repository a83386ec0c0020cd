"""Every recorder endpoint against hostile input: a 4xx with a reason and a counter (or a 2xx
where the input is storable), never a 5xx, never a traceback, nothing half-written."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.app import make_app
from recorder.config import Database, Secrets
from recorder.journal import Journal
from recorder.store import PgStore
from tests.http_raw import raw_post
from tests.recorder.samples import (
    GITHUB_SECRET,
    TOKEN,
    VERCEL_SECRET,
    am_alert,
    am_payload,
    github_deployment_status,
    vercel_event,
)

pytestmark = pytest.mark.integration
JSON = "application/json"


def _am(body: bytes) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "Content-Type": JSON}


def _vercel(body: bytes) -> dict[str, str]:
    sig = hmac.new(VERCEL_SECRET, body, hashlib.sha1).hexdigest()
    return {"x-vercel-signature": sig, "Content-Type": JSON}


def _github(body: bytes) -> dict[str, str]:
    sig = "sha256=" + hmac.new(GITHUB_SECRET, body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": sig,
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": "d-1",
        "Content-Type": JSON,
    }


# endpoint -> (path, signed headers for a body, a valid body)
ENDPOINTS: dict[str, tuple[str, Callable[[bytes], dict[str, str]], bytes]] = {
    "alertmanager": ("/webhooks/alertmanager", _am, am_payload([am_alert()])),
    "heartbeat": ("/webhooks/heartbeat", _am, am_payload([am_alert("Watchdog")])),
    "vercel": ("/webhooks/deployments/vercel", _vercel, vercel_event("deployment.succeeded")),
    "github": ("/webhooks/deployments/github", _github, github_deployment_status("success")),
}


def _swap(body: bytes, old: str, new: str) -> bytes:
    text = body.decode()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def hostile(valid: bytes) -> dict[str, bytes]:
    """Each kind of bad input, grafted onto a valid body for the endpoint."""
    doc = json.loads(valid)
    first_string = next(k for k, v in doc.items() if isinstance(v, str))
    raw = json.dumps(doc)
    key = f'"{first_string}": '
    return {
        "nul_in_string": _swap(valid, key + json.dumps(doc[first_string]), key + '"a\\u0000b"'),
        "lone_surrogate": _swap(valid, key + json.dumps(doc[first_string]), key + '"\\ud800x"'),
        "nan_literal": (raw[:-1] + ', "n": NaN}').encode(),
        "infinity_literal": (raw[:-1] + ', "n": -Infinity}').encode(),
        "int_overflow": (
            raw[:-1] + ', "truncatedAlerts": ' + "9" * 30 + ', "createdAt": ' + "9" * 400 + "}"
        ).encode(),
        "long_string": (raw[:-1] + ', "receiver": "' + "r" * 100_000 + '"}').encode(),
        "timestamp_underflow": valid.replace(b"2026-11-2", b"0001-01-0", 1)
        .replace(b"T10:", b"T00:", 1)
        .replace(b"Z", b"+05:00", 1),
        "deep_nesting": (raw[:-1] + ', "deep": ' + "[" * 5000 + "]" * 5000 + "}").encode(),
        "not_json": b"\xff\xfe not json at all \x00",
        "empty": b"",
    }


MUST_REFUSE = {
    "nul_in_string",
    "lone_surrogate",
    "nan_literal",
    "infinity_literal",
    "deep_nesting",
    "not_json",
    "empty",
}


@pytest.fixture
async def client(
    migrated_dsn: str, secrets: Secrets, aiohttp_client: Any, tmp_path: Path
) -> AsyncIterator[TestClient]:
    store = PgStore(Database.model_validate({"conninfo": migrated_dsn, "acquire_timeout": "2s"}))
    await store.open()
    journal = Journal(tmp_path / "journal", 1 << 20)
    journal.open()
    app = make_app(store, secrets, max_body_bytes=1 << 20, journal=journal)
    yield await aiohttp_client(app)
    await store.close()


async def errors_total(client: TestClient, source: str) -> float:
    text = await (await client.get("/metrics")).text()
    prefix = "recorder_webhook_errors_total{"
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and f'source="{source}"' in line
    )


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
async def test_every_kind_of_bad_body_is_a_4xx_with_a_counter_or_stored(
    client: TestClient, endpoint: str, migrated_dsn: str
) -> None:
    path, sign, valid = ENDPOINTS[endpoint]
    for kind, body in hostile(valid).items():
        before = await errors_total(client, endpoint)
        resp = await client.post(path, data=body, headers=sign(body))
        text = await resp.text()
        assert resp.status < 500, (kind, resp.status, text)
        assert "Traceback" not in text
        if endpoint != "heartbeat" and kind in MUST_REFUSE:
            # The heartbeat reads no body; everything else must refuse these outright.
            assert 400 <= resp.status < 500, (kind, resp.status, text)
        if resp.status >= 400:
            assert json.loads(text)["error"], (kind, text)
            assert await errors_total(client, endpoint) == before + 1, kind
    # Nothing half-written: every notification logged has its alerts (or their dead letters).
    with psycopg.connect(migrated_dsn) as conn:
        (orphans,) = conn.execute(
            "SELECT count(*) FROM alertmanager_notifications WHERE alert_count > "
            "(SELECT count(*) FROM infrastructure_alerts)"
        ).fetchone() or (0,)
    assert orphans == 0


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize(
    "value", [b"\xff\xfe\xfd", "Bearer tök€n".encode(), b"Bearer \xc3\x28", b"sha256=\x80\x81"]
)
async def test_non_utf8_auth_and_signature_headers_are_refused(
    client: TestClient, endpoint: str, value: bytes
) -> None:
    path, sign, valid = ENDPOINTS[endpoint]
    good = sign(valid)
    headers = [f"{k}: {v}".encode() for k, v in good.items() if k.lower() not in _SECRET_HEADERS]
    for name in (b"Authorization", b"x-vercel-signature", b"X-Hub-Signature-256"):
        headers.append(name + b": " + value)
    status = await raw_post(client, path, headers, valid)
    assert status in (401, 403), status


_SECRET_HEADERS = {"authorization", "x-vercel-signature", "x-hub-signature-256"}


@pytest.mark.parametrize("endpoint", ["alertmanager", "vercel", "github"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data"])
async def test_wrong_content_type_is_415(
    client: TestClient, endpoint: str, content_type: str
) -> None:
    path, sign, valid = ENDPOINTS[endpoint]
    resp = await client.post(
        path, data=valid, headers={**sign(valid), "Content-Type": content_type}
    )
    assert resp.status == 415
    assert (await resp.json())["error"] == "unsupported_media_type"


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


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    endpoint=st.sampled_from(sorted(ENDPOINTS)),
    body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    overlay=st.dictionaries(
        st.sampled_from(["alerts", "payload", "deployment", "status", "version", "id", "type"]),
        json_values,
        max_size=3,
    ),
)
async def test_arbitrary_bytes_and_json_never_5xx(
    client: TestClient, endpoint: str, body: bytes, overlay: dict[str, Any]
) -> None:
    path, sign, valid = ENDPOINTS[endpoint]
    for data in (body, json.dumps({**json.loads(valid), **overlay}).encode()):
        resp = await client.post(path, data=data, headers=sign(data))
        assert resp.status < 500, (data[:200], await resp.text())
