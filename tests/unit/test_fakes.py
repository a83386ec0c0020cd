"""The fakes are strict: a request the real Slack or PagerDuty would refuse is refused the same way."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient

from fakes.platform import Platform
from fakes.sink import PAGER, SLACK, make_sink

HOOK = "T0TEST/B0TEST/s3cret"
KEY = "k" * 32


@pytest.fixture
async def sink(aiohttp_client) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(make_sink({HOOK: "#ops"}, [KEY]))


@pytest.mark.parametrize(
    ("path", "body", "ctype", "status", "answer"),
    [
        (f"/services/{HOOK}", '{"text": "hi"}', "application/json", 200, "ok"),
        (
            "/services/T0TEST/B0TEST/wrong",
            '{"text": "hi"}',
            "application/json",
            403,
            "invalid_token",
        ),
        (
            "/services/T0OTHER/B0TEST/s3cret",
            '{"text": "hi"}',
            "application/json",
            404,
            "no_service",
        ),
        ("/services/T0TEST", '{"text": "hi"}', "application/json", 404, "no_service"),
        (f"/services/{HOOK}", "not json", "application/json", 400, "invalid_payload"),
        (f"/services/{HOOK}", '{"text": "hi"}', "text/plain", 400, "invalid_payload"),
        (f"/services/{HOOK}", '{"channel": "#x"}', "application/json", 400, "no_text"),
        (
            f"/services/{HOOK}",
            '{"attachments": "x"}',
            "application/json",
            400,
            "invalid_attachments",
        ),
    ],
)
async def test_slack_answers(
    sink: TestClient, path: str, body: str, ctype: str, status: int, answer: str
) -> None:
    resp = await sink.post(path, data=body, headers={"Content-Type": ctype})
    assert resp.status == status
    assert await resp.text() == answer
    stored = sink.server.app[SLACK].messages
    assert len(stored) == (1 if status == 200 else 0)


async def test_slack_attachments_are_flattened_for_reading(sink: TestClient) -> None:
    payload = {
        "channel": "#ops-alerts",
        "attachments": [
            {
                "title": "[CRITICAL] X",
                "text": "details",
                "actions": [{"text": "Runbook", "url": "https://r/x"}],
            }
        ],
    }
    assert (await sink.post(f"/services/{HOOK}", json=payload)).status == 200
    msg = (await (await sink.get("/api/messages")).json())["slack"][0]
    assert msg["channel"] == "#ops-alerts"
    assert msg["text"] == "[CRITICAL] X\ndetails\n[Runbook](https://r/x)"


async def test_sink_shows_which_channel_each_message_reached(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    finance = "T0TEST/B0FIN/f1nance"
    sink = await aiohttp_client(make_sink({HOOK: "#ops", finance: "#finance"}, [KEY]))
    assert (await sink.post(f"/services/{HOOK}", json={"text": "disk full"})).status == 200
    # A finance app's webhook posts to its own channel; the message's `channel` wins as in Slack.
    budget = {"channel": "#finance", "text": "[INFO] BillingBudgetConsumed"}
    assert (await sink.post(f"/services/{finance}", json=budget)).status == 200
    page = await (await sink.get("/")).text()
    assert "Slack channels: <a href='/?channel=%23finance'>#finance</a> (1)" in page
    assert "<span class='ch'>#finance</span>" in page
    assert "<span class='ch'>#ops</span>" in page
    only = await (await sink.get("/", params={"channel": "#finance"})).text()
    assert "BillingBudgetConsumed" in only
    assert "disk full" not in only
    got = (await (await sink.get("/api/messages", params={"channel": "#finance"})).json())["slack"]
    assert [(m["channel"], m["text"]) for m in got] == [("#finance", budget["text"])]


@pytest.mark.parametrize(
    ("event", "status", "error"),
    [
        (
            {
                "routing_key": KEY,
                "event_action": "trigger",
                "payload": {"summary": "s", "source": "x", "severity": "critical"},
            },
            202,
            None,
        ),
        (
            {
                "routing_key": "short",
                "event_action": "trigger",
                "payload": {"summary": "s", "source": "x", "severity": "critical"},
            },
            400,
            "'routing_key' is invalid",
        ),
        (
            {
                "routing_key": "z" * 32,
                "event_action": "trigger",
                "payload": {"summary": "s", "source": "x", "severity": "critical"},
            },
            400,
            "'routing_key' is invalid",
        ),
        (
            {"routing_key": KEY, "event_action": "explode"},
            400,
            "'event_action' is missing or blank",
        ),
        (
            {
                "routing_key": KEY,
                "event_action": "trigger",
                "payload": {"source": "x", "severity": "critical"},
            },
            400,
            "'payload.summary' is missing or blank",
        ),
        (
            {
                "routing_key": KEY,
                "event_action": "trigger",
                "payload": {"summary": "s", "source": "x", "severity": "sev1"},
            },
            400,
            "'payload.severity' is invalid",
        ),
        ({"routing_key": KEY, "event_action": "resolve"}, 400, "'dedup_key' is missing or blank"),
    ],
)
async def test_pagerduty_answers(
    sink: TestClient, event: dict[str, object], status: int, error: str | None
) -> None:
    resp = await sink.post("/v2/enqueue", json=event)
    assert resp.status == status
    body = await resp.json()
    if error is None:
        assert body["status"] == "success"
        assert len(sink.server.app[PAGER].events) == 1
    else:
        assert body["status"] == "invalid event"
        assert error in body["errors"]
        assert not sink.server.app[PAGER].events


async def test_platform_modes(unused_tcp_port: int) -> None:
    platform = Platform("127.0.0.1", unused_tcp_port)
    await platform.start()
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        async with ClientSession() as http:
            async with http.get(base + "/") as resp:
                assert resp.status == 200
                assert resp.headers["X-Frame-Options"] == "DENY"
            await platform.set_mode("error")
            async with http.get(base + "/api/health") as resp:
                assert resp.status == 503
            await platform.set_mode("slow", 0.3)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            async with http.get(base + "/") as resp:
                assert resp.status == 200
            assert loop.time() - t0 >= 0.3
            await platform.set_mode("down")
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", unused_tcp_port)
            await platform.set_mode("ok")
            async with http.get(base + "/") as resp:
                assert resp.status == 200
            with pytest.raises(ValueError, match="mode must be"):
                await platform.set_mode("sideways")
    finally:
        await platform.stop()


async def test_platform_control_rejects_bad_requests(aiohttp_client, unused_tcp_port: int) -> None:  # type: ignore[no-untyped-def]
    platform = Platform("127.0.0.1", unused_tcp_port)
    await platform.start()
    try:
        control = await aiohttp_client(platform.control_app())
        assert (await control.put("/mode", json={"mode": "nope"})).status == 400
        assert (await control.put("/mode", data="x")).status == 400
        ok = await control.put("/mode", json={"mode": "slow", "delay": 2})
        assert await ok.json() == {"mode": "slow", "delay": 2.0}
    finally:
        await platform.stop()


def test_sink_app_has_no_stray_state() -> None:
    app = make_sink({}, [])
    assert isinstance(app, web.Application)
    assert app[SLACK].messages == []
