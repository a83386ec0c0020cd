"""Bad input and bad credentials are a 4xx JSON answer with a reason, before the database is
asked (these tests run without one): never a 500, never a traceback. And the request counters
stay bounded."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from api.app import make_app
from tests.api.conftest import MACHINE_TOKEN, USERS, as_user, bearer, token, write_config

URL = "/api/infrastructure/alerts"
GOOD = {
    "alert_type": "X",
    "severity": "info",
    "service_name": "web",
    "alert_title": "t",
    "alert_description": "d",
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    # No database and no Alertmanager: everything here must be refused before either is asked.
    cfg, secrets, _ = write_config(
        tmp_path,
        database={
            "conninfo": f"host=127.0.0.1 port={_closed_port()} dbname=x user=x",
            "acquire_timeout": "100ms",
        },
        machine_tokens=[],
    )
    return await aiohttp_client(make_app(cfg, secrets))


@pytest.mark.parametrize(
    ("method", "body", "content_type", "status", "error"),
    [
        ("POST", b"{", "application/json", 400, "invalid_json"),
        ("POST", b'{"alert_type": NaN}', "application/json", 400, "invalid_json"),
        # One body saying two things (the last key would win): refused.
        (
            "POST",
            json.dumps(GOOD)[:-1].encode() + b', "severity": "info"}',
            "application/json",
            400,
            "invalid_json",
        ),
        ("POST", b"[" * 100 + b"]" * 100, "application/json", 400, "invalid_json"),
        ("POST", b"\xff\xfe", "application/json", 400, "invalid_json"),
        ("POST", json.dumps(GOOD).encode(), "text/plain", 415, "unsupported_media_type"),
        (
            "POST",
            json.dumps(GOOD).encode(),
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        ("POST", b"[]", "application/json", 422, "invalid_request"),
        ("POST", b'"text"', "application/json", 422, "invalid_request"),
        (
            "POST",
            json.dumps({**GOOD, "extra": 1}).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            "POST",
            json.dumps({**GOOD, "severity": "fatal"}).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            "POST",
            json.dumps({**GOOD, "alert_title": "   "}).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            "POST",
            json.dumps({**GOOD, "alert_type": "x" * 101}).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            "POST",
            json.dumps({**GOOD, "metric_threshold": "5"}).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            "POST",
            json.dumps({**GOOD, "metric_threshold": 10**400}).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            "POST",
            json.dumps({**GOOD, "alert_rule": [1]}).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            "POST",
            json.dumps({**GOOD, "alert_title": "a\u0000b"}).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        ("POST", b'{"alert_title": "\\ud800"}', "application/json", 422, "invalid_request"),
        (
            "POST",
            json.dumps({k: v for k, v in GOOD.items() if k != "severity"}).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            "PUT",
            json.dumps({"id": "42", "action": "resolve"}).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            "PUT",
            json.dumps({"id": "0" * 32, "action": "resolve"}).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            "PUT",
            json.dumps({"id": "00000000-0000-4000-8000-000000000001", "action": "delete"}).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            "PUT",
            json.dumps(
                {"id": "00000000-0000-4000-8000-000000000001", "action": "resolve", "notes": 3}
            ).encode(),
            "application/json",
            422,
            "invalid_request",
        ),
        ("PUT", b"x" * 5000, "application/json", 413, "too_large"),
    ],
)
async def test_bad_bodies_are_4xx_with_a_reason(
    api: TestClient, method: str, body: bytes, content_type: str, status: int, error: str
) -> None:
    resp = await api.request(
        method, URL, data=body, headers={**as_user("admin"), "Content-Type": content_type}
    )
    assert resp.status == status, await resp.text()
    doc = await resp.json()
    assert doc["error"] == error
    assert set(doc) == {"error", "reason"}
    assert "Traceback" not in doc["reason"]


async def test_a_chunked_body_over_the_limit_is_413(api: TestClient) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1000

    resp = await api.post(
        URL, data=chunks(), headers={**as_user("admin"), "Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert (await resp.json())["error"] == "too_large"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decode_as_its_encoding_says_is_400(
    api: TestClient, encoding: str
) -> None:
    resp = await api.post(
        URL,
        data=b'{"alert_type": "x"}',
        headers={
            **as_user("admin"),
            "Content-Type": "application/json",
            "Content-Encoding": encoding,
        },
    )
    assert resp.status == 400, await resp.text()
    doc = await resp.json()
    assert doc == {
        "error": "invalid_json",
        "reason": "the body does not decode as its Content-Encoding says",
    }


async def test_query_parameters_are_refused_where_none_are_defined(api: TestClient) -> None:
    resp = await api.get(URL, params={"severity": "critical"}, headers=as_user("admin"))
    assert resp.status == 422
    assert "severity" in (await resp.json())["reason"]


async def test_unknown_paths_and_methods_are_json_and_counted_without_minting_labels(
    api: TestClient,
) -> None:
    resp = await api.get("/api/infrastructure/no-such-thing", headers=as_user("admin"))
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    resp = await api.delete(URL, headers=as_user("admin"))
    assert resp.status == 405
    assert (await resp.json())["error"] == "method_not_allowed"
    assert "PUT" in resp.headers["Allow"]
    # A method aiohttp's parser knows but no route serves (unknown ones it refuses itself).
    resp = await api.request("PROPFIND", URL)
    assert resp.status == 405
    metrics = await (await api.get("/metrics")).text()
    assert 'api_requests_total{code="404",method="GET",route="unmatched"} 1.0' in metrics
    # No route served it (the router's match is an error), so it counts as unmatched too.
    assert 'api_requests_total{code="405",method="DELETE",route="unmatched"} 1.0' in metrics
    assert 'method="other"' in metrics
    assert "PROPFIND" not in metrics
    assert "/api/infrastructure/no-such-thing" not in metrics


async def test_the_database_being_away_is_503_and_not_ready(api: TestClient) -> None:
    resp = await api.get(URL, headers=as_user("admin"))
    assert resp.status == 503
    assert await resp.json() == {
        "error": "db_unavailable",
        "reason": "the database is unavailable; retry",
    }
    assert (await api.get("/-/ready")).status == 503
    assert (await api.get("/-/healthy")).status == 200
    metrics = await (await api.get("/metrics")).text()
    assert "api_up 0.0" in metrics
    assert "api_build_info{" in metrics


async def test_a_request_id_is_kept_when_sane_and_replaced_when_not(api: TestClient) -> None:
    resp = await api.get("/-/healthy", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await api.get("/-/healthy", headers={"X-Request-Id": "a b<script>"})
    assert resp.headers["X-Request-Id"] != "a b<script>"
    assert len(resp.headers["X-Request-Id"]) == 32


# --- credentials ----------------------------------------------------------------------------

OTHER_SECRET = "another-project-secret-that-is-also-long-enough"


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "malformed_token"),
        (bearer("not.a.jwt"), "malformed_token"),
        (bearer(token(USERS["admin"], exp=datetime.now(UTC) - timedelta(hours=1))), "expired"),
        (bearer(token(USERS["admin"], aud="another-audience")), "wrong_audience"),
        (bearer(token(USERS["admin"], iss="https://other.supabase.co/auth/v1")), "wrong_issuer"),
        (bearer(token(USERS["admin"], key=OTHER_SECRET)), "bad_signature"),
        (bearer(token(USERS["admin"], exp=None)), "missing_claim"),
        (bearer(token(USERS["admin"], role="anon")), "not_a_user"),
        (bearer(token(USERS["admin"], role="service_role")), "not_a_user"),
        (bearer(token("not-a-uuid")), "not_a_user"),
        (
            bearer(jwt.encode({"sub": str(USERS["admin"])}, None, algorithm="none")),
            "unsupported_algorithm",
        ),
        (bearer(MACHINE_TOKEN[:-1]), "malformed_token"),
    ],
)
async def test_bad_credentials_are_401_with_a_reason_before_any_database(
    api: TestClient, headers: dict[str, str], error: str
) -> None:
    for method in ("GET", "POST", "PUT"):
        resp = await api.request(method, "/api/infrastructure/alerts", headers=headers, json={})
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        body = await resp.json()
        assert body["error"] == error
        token_value = headers.get("Authorization", "").partition(" ")[2]
        if token_value:
            assert token_value not in body["reason"]
    metrics = await (await api.get("/metrics")).text()
    assert f'api_requests_rejected_total{{reason="{error}"}} 3.0' in metrics
