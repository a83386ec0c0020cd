"""The shared upstream client and refresh loop: reasons, rate-limit windows per vendor, secret
files re-read on rotation, back-off, and stale data dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from common.refresh import RefreshLoop
from common.upstream import (
    SecretFileAuth,
    Upstream,
    UpstreamError,
    reset_delta_seconds,
    reset_epoch_seconds,
    retry_after,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1_780_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def client(handler: Any, clock: Clock, **kw: Any) -> Upstream:
    return Upstream(
        "https://api.example.com",
        auth=kw.pop("auth", None),
        timeout=5,
        user_agent="wsinfra-test",
        transport=httpx.MockTransport(handler),
        clock=clock,
        sleep=clock.sleep,
        **kw,
    )


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (401, "auth"),
        (403, "auth"),
        (404, "client"),
        (500, "server"),
        (503, "server"),
        (429, "rate_limited"),
    ],
)
async def test_each_status_has_one_reason_and_is_counted(status: int, reason: str) -> None:
    clock = Clock()
    up = client(lambda r: httpx.Response(status, json={"error": {"code": "nope"}}), clock)
    with pytest.raises(UpstreamError) as err:
        await up.get_json("things", "/v1/things")
    assert err.value.reason == reason
    assert "(nope)" in err.value.detail
    assert up.stats.errors[reason] == 1
    assert up.stats.requests[("things", str(status))] == 1


async def test_transport_failures_and_bad_json() -> None:
    clock = Clock()

    def boom(_: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(UpstreamError, match="connect"):
        await client(boom, clock).get_json("x", "/x")

    def slow(_: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    with pytest.raises(UpstreamError, match="timeout"):
        await client(slow, clock).get_json("x", "/x")
    with pytest.raises(UpstreamError, match="malformed"):
        await client(lambda r: httpx.Response(200, text="<html>"), clock).get_json("x", "/x")


async def test_vercel_style_reset_blocks_the_endpoint_until_the_epoch() -> None:
    clock = Clock()
    reset = int(clock.t) + 30
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    up = client(lambda r: httpx.Response(200, json=[], headers=headers), clock)
    await up.get_json("deployments", "/v6/deployments")
    assert up.blocked_until["deployments"] == reset
    with pytest.raises(UpstreamError) as err:
        await up.get_json("deployments", "/v6/deployments")  # max_wait 0: give up, say when
    assert (err.value.reason, err.value.retry_at) == ("rate_limited", reset)
    await up.get_json("projects", "/v9/projects")  # other endpoints are not blocked


async def test_supabase_style_reset_is_seconds_left_and_waits_within_max_wait() -> None:
    clock = Clock()
    calls: list[float] = []

    def handler(_: httpx.Request) -> httpx.Response:
        calls.append(clock.t)
        return httpx.Response(
            200, json={}, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "20"}
        )

    up = client(handler, clock, reset=reset_delta_seconds, max_wait=60)
    await up.get_json("health", "/v1/projects/x/health")
    await up.get_json("health", "/v1/projects/x/health")
    assert calls[1] - calls[0] == 20
    assert clock.slept == [20]


async def test_retry_after_wins_on_429_and_a_far_reset_is_capped() -> None:
    clock = Clock()
    up = client(lambda r: httpx.Response(429, headers={"Retry-After": "90"}), clock)
    with pytest.raises(UpstreamError):
        await up.get_json("costs", "/v1/organization/costs")
    assert up.blocked_until["costs"] == clock.t + 90
    far = {"X-RateLimit-Reset": str(int(clock.t) + 86400)}
    up = client(lambda r: httpx.Response(429, headers=far), clock)
    with pytest.raises(UpstreamError):
        await up.get_json("costs", "/x")
    assert up.blocked_until["costs"] == clock.t + 600


async def test_own_ceiling_per_minute_paces_requests() -> None:
    clock = Clock()
    up = client(
        lambda r: httpx.Response(200, json=1), clock, max_requests_per_minute=2, max_wait=120
    )
    for _ in range(3):
        await up.get_json("x", "/x")
    assert clock.slept == [60.0]


def test_reset_parsers() -> None:
    now = 1000.0
    assert reset_epoch_seconds("2000", now) == 2000.0
    assert reset_epoch_seconds("soon", now) is None
    assert reset_delta_seconds("60", now) == 1060.0
    assert reset_delta_seconds("6m0s", now) == 1360.0
    assert reset_delta_seconds("1.5s", now) == 1001.5
    assert reset_delta_seconds("x", now) is None
    assert retry_after("120", now) == 1120.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 1445412480.0
    assert retry_after("later", now) is None


async def test_secret_file_auth_is_reread_after_rotation(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    seen: list[str] = []

    def handler(r: httpx.Request) -> httpx.Response:
        seen.append(r.headers["Authorization"])
        return httpx.Response(200, json={})

    up = client(handler, Clock(), auth=SecretFileAuth(bearer=token))
    await up.get_json("x", "/x")
    token.write_text("second\n")
    import os

    os.utime(token, (1, 2))  # a new mtime even within the same clock tick
    await up.get_json("x", "/x")
    assert seen == ["Bearer first", "Bearer second"]
    user, pw = tmp_path / "u", tmp_path / "p"
    user.write_text("me")
    pw.write_text("pw")
    assert SecretFileAuth(basic=(user, pw)).header() == "Basic bWU6cHc="


async def test_errors_never_carry_the_token_or_the_body(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("sekret-token")
    up = client(
        lambda r: httpx.Response(500, text="sekret-token echoed back"),
        Clock(),
        auth=SecretFileAuth(bearer=token),
    )
    with pytest.raises(UpstreamError) as err:
        await up.get_json("x", "/x", params={"q": "sekret-token"})
    assert "sekret" not in str(err.value)


async def test_refresh_loop_keeps_the_last_good_snapshot_then_drops_it_when_stale() -> None:
    clock = Clock()
    outcomes: list[Any] = [
        {"n": 1},
        UpstreamError("server", "HTTP 500"),
        UpstreamError("server", "HTTP 500"),
        UpstreamError("rate_limited", "429", retry_at=clock.t + 10_000),
    ]

    async def refresh() -> dict[str, int]:
        out = outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return dict(out)

    loop = RefreshLoop(
        "api",
        refresh,
        interval=300,
        stale_after=900,
        first_backoff=60,
        clock=clock,
        sleep=clock.sleep,
    )
    assert await loop.refresh_once() == 300
    assert loop.current() == {"n": 1}
    assert await loop.refresh_once() == 60  # back-off, sooner than the interval
    assert await loop.refresh_once() == 120  # doubled
    clock.t += 600
    assert loop.current() == {"n": 1}  # 600 s old: still within stale_after
    waited = await loop.refresh_once()
    assert waited == pytest.approx(10_000 - 600)  # never before the vendor said
    clock.t += 400
    assert loop.current() is None  # stale: dropped
    fams = {f.name: f for f in loop.metrics("x_api", "the API")}
    assert fams["x_api_up"].samples[0].value == 0.0
    errors = {s.labels["reason"]: s.value for s in fams["x_api_refresh_errors"].samples}
    assert (errors["server"], errors["rate_limited"], errors["auth"]) == (2, 1, 0)
