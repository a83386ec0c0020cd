"""The deployments poller against the strict fake API: incremental, paged, rate-limited, exact."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from common.upstream import UpstreamError
from exporters.vercel import api
from exporters.vercel.app import VercelExporter
from exporters.vercel.app import make_app as vercel_app
from exporters.vercel.deployments import DeploymentsSource
from fakes.vercel_api import FakeDeployment, VercelApiState, make_app, timeline
from tests.vercel.helpers import PROJECT_ID, TOKEN, SimClock, load, render, value, write_config

TEAM = "team_1a2b3c4d5e6f7g8h9i0j1k2l"


def dep(
    uid: str,
    created: float,
    *,
    build: float = 60.0,
    queue: float = 5.0,
    outcome: str = "READY",
    prod: bool = False,
) -> FakeDeployment:
    c = int(created * 1000)
    return FakeDeployment(
        uid=uid,
        project_id=PROJECT_ID,
        name="web",
        created_ms=c,
        building_ms=c + int(queue * 1000),
        done_ms=c + int((queue + build) * 1000),
        outcome=outcome,
        target="production" if prod else None,
        sha="de8b89f13b2bc164cf07e735921bf5513e17951d",
        ref="main" if prod else "feature-x",
    )


def prod_info(text: str) -> float | None:
    """The production info series for the commit every `dep(..., prod=True)` carries."""
    return value(
        text,
        "vercel_production_deployment_info",
        project="web",
        commit="de8b89f13b2b",
        branch="main",
    )


class Rig:
    def __init__(
        self,
        tmp_path: Path,
        clock: SimClock,
        state: VercelApiState,
        url: str,
        api: dict | None = None,
    ) -> None:  # type: ignore[type-arg]
        self.tmp_path, self.clock, self.state, self.url = tmp_path, clock, state, url
        self.api_overrides = {"state_file": str(tmp_path / "state.json"), **(api or {})}
        self.exporter = self.new_exporter()

    def new_exporter(self) -> VercelExporter:
        cfg, secrets = load(write_config(self.tmp_path, base_url=self.url, api=self.api_overrides))
        return VercelExporter(cfg, secrets, clock=self.clock, sleep=self.clock.sleep)

    @property
    def source(self) -> DeploymentsSource:
        assert self.exporter.deployments is not None
        return self.exporter.deployments

    async def refresh(self) -> bool:
        return await self.source.poll()

    def metrics(self) -> str:
        return render(self.exporter).decode()

    def requests(self) -> list[dict[str, str]]:
        return [q for path, q in self.state.requests]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = SimClock()
    state = VercelApiState(token=TOKEN, team_id=TEAM, clock=clock)
    server = TestServer(make_app(state))
    await server.start_server()
    r = Rig(tmp_path, clock, state, str(server.make_url("")).rstrip("/"))
    yield r
    await r.exporter.aclose()
    await server.close()


async def test_first_load_pages_through_history_and_counts_nothing(rig: Rig) -> None:
    now = rig.clock()
    rig.state.add(timeline(PROJECT_ID, "web", now - 2 * 86400, now - 600, 600.0))  # 285 deployments
    assert await rig.refresh()
    pages = rig.requests()
    assert len(pages) == 3  # 100 + 100 + 85
    assert all(
        q["limit"] == "100" and q["teamId"] == TEAM and q["projectId"] == PROJECT_ID for q in pages
    )
    assert "until" not in pages[0]
    assert pages[1]["until"]
    assert int(pages[2]["until"]) < int(pages[1]["until"])
    text = rig.metrics()
    assert value(text, "vercel_up") == 1
    # The first load is the baseline: history is not replayed into counters.
    assert (
        value(text, "vercel_deployments_total", project="web", target="production", state="ready")
        == 0
    )
    newest_prod = max(
        (d for d in rig.state.deployments if d.target == "production" and d.outcome == "READY"),
        key=lambda d: d.done_ms,
    )
    assert (
        value(
            text,
            "vercel_deployment_last_ready_timestamp_seconds",
            project="web",
            target="production",
        )
        == newest_prod.done_ms / 1000
    )
    assert (
        value(
            text,
            "vercel_production_deployment_info",
            project="web",
            commit=newest_prod.sha[:12],
            branch="main",
        )
        == 1
    )


async def test_refreshes_ask_only_for_what_changed_and_count_each_deployment_once(rig: Rig) -> None:
    now = rig.clock()
    rig.state.add(timeline(PROJECT_ID, "web", now - 86400, now - 300, 300.0))
    assert await rig.refresh()
    first = len(rig.requests())
    rig.state.add([dep("dpl_new1", now + 10, build=90.0, queue=4.0, prod=True)])
    counted = []
    for _ in range(8):  # 4 minutes of 30 s refreshes: queued, building, ready, then steady
        rig.clock.t += 30
        assert await rig.refresh()
        counted.append(
            value(
                rig.metrics(),
                "vercel_deployments_total",
                project="web",
                target="production",
                state="ready",
            )
        )
    later = rig.requests()[first:]
    assert len(later) == 8, "one request per refresh at steady state"
    newest_before = max(d.created_ms for d in rig.state.deployments if d.uid != "dpl_new1")
    assert all(int(q["since"]) == newest_before - 300_000 for q in later[:1])
    assert all(int(q["since"]) >= newest_before - 300_000 for q in later)
    assert counted[-1] == 1
    assert counted == sorted(counted)
    text = rig.metrics()
    assert (
        value(
            text,
            "vercel_deployment_build_duration_seconds_count",
            project="web",
            target="production",
        )
        == 1
    )
    assert (
        value(
            text, "vercel_deployment_build_duration_seconds_sum", project="web", target="production"
        )
        == 90.0
    )
    assert (
        value(
            text, "vercel_deployment_queue_duration_seconds_sum", project="web", target="production"
        )
        == 4.0
    )
    assert value(text, "vercel_deployments_in_progress", project="web", target="production") == 0
    assert prod_info(text) == 1


async def test_in_flight_deployments_are_seen_building(rig: Rig) -> None:
    now = rig.clock()
    rig.state.add([dep("dpl_b", now - 30, build=600.0, queue=1.0)])
    assert await rig.refresh()
    text = rig.metrics()
    assert value(text, "vercel_deployments_in_progress", project="web", target="preview") == 1
    rig.clock.t += 700
    assert await rig.refresh()
    text = rig.metrics()
    assert value(text, "vercel_deployments_in_progress", project="web", target="preview") == 0
    # Building when first seen, so it finished under our watch: counted.
    assert (
        value(text, "vercel_deployments_total", project="web", target="preview", state="ready") == 1
    )


async def test_a_restart_neither_recounts_nor_misses_deployments(rig: Rig) -> None:
    now = rig.clock()
    rig.state.add([dep("dpl_old", now - 3000)])
    assert await rig.refresh()
    rig.state.add([dep("dpl_a", now + 5, build=30.0, queue=1.0, outcome="ERROR", prod=True)])
    rig.clock.t += 60
    assert await rig.refresh()
    assert (
        value(
            rig.metrics(),
            "vercel_deployments_total",
            project="web",
            target="production",
            state="error",
        )
        == 1
    )
    # Down for ten minutes; one deployment starts and finishes meanwhile.
    rig.state.add([dep("dpl_b", now + 120, build=30.0, queue=1.0, prod=True)])
    rig.clock.t += 600
    await rig.exporter.aclose()
    rig.exporter = rig.new_exporter()
    assert await rig.refresh()
    text = rig.metrics()
    assert (
        value(text, "vercel_deployments_total", project="web", target="production", state="error")
        == 0
    ), "dpl_a counted before the restart"
    assert (
        value(text, "vercel_deployments_total", project="web", target="production", state="ready")
        == 1
    ), "dpl_b finished while we were down"


async def test_rate_limit_waits_for_the_reset_instead_of_hammering(rig: Rig) -> None:
    now = rig.clock()
    rig.state.rate_limit = 2
    rig.state.add(timeline(PROJECT_ID, "web", now - 86400, now - 60, 240.0))  # 360: four pages
    assert await rig.refresh()
    assert len(rig.requests()) == 4 + 0  # never a request answered 429: we waited for the reset
    assert rig.clock.slept
    assert max(rig.clock.slept) <= 60
    text = rig.metrics()
    assert value(text, "vercel_api_rate_limit_wait_seconds_total") > 0  # type: ignore[operator]
    assert value(text, "vercel_api_errors_total", reason="rate_limited") == 0


async def test_429_storm_backs_off_until_reset_and_keeps_the_snapshot(rig: Rig) -> None:
    now = rig.clock()
    rig.state.add([dep("dpl_1", now - 600, prod=True)])
    assert await rig.refresh()
    rig.state.faults = ["429"] * 10
    rig.clock.t += 30
    wait = await rig.source.loop.refresh_once()
    assert rig.source.loop.failures_in_a_row == 1
    text = rig.metrics()
    assert value(text, "vercel_api_errors_total", reason="rate_limited") == 3  # type: ignore[operator]
    assert value(text, "vercel_api_requests_total", endpoint="deployments", code="429") == 3
    assert value(text, "vercel_up") == 1, "the last good snapshot is still fresh"
    assert prod_info(text) == 1
    # The next refresh comes no sooner than the regular interval (the 429s' reset is 2 s away).
    assert wait == 30.0


def _answer_429(headers: dict[str, str], body: object) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(429, headers=headers, json=body)


@pytest.mark.parametrize(
    ("headers", "body", "blocked_for"),
    [
        ({"X-RateLimit-Reset": "1780000300"}, {}, 300.0),  # the header
        ({}, {"error": {"code": "rate_limited", "limit": {"reset": 1780000200}}}, 200.0),  # body
        ({"X-RateLimit-Reset": "soon"}, {"error": {"limit": {"reset": 1780000200}}}, 200.0),
        ({}, {"error": {"code": "rate_limited"}}, 60.0),  # nothing said: a minute
        ({"X-RateLimit-Reset": "1779999000"}, {}, 60.0),  # a reset already past: a minute
        ({"X-RateLimit-Reset": "1780086400"}, {}, 600.0),  # a day away: re-checked in 10 min
        ({"Retry-After": "5"}, {"error": {"limit": {"reset": 1780000100}}}, 100.0),
    ],
)
async def test_a_429s_reset_comes_from_the_header_else_the_body_else_a_minute(
    tmp_path: Path, headers: dict[str, str], body: object, blocked_for: float
) -> None:
    clock = SimClock()  # 1_780_000_000
    cfg, _ = load(write_config(tmp_path))
    up = api.make_upstream(
        cfg.api, transport=httpx.MockTransport(_answer_429(headers, body)), clock=clock
    )
    with pytest.raises(UpstreamError) as err:
        await up.get_json("deployments", "/v6/deployments")
    assert err.value.reason == "rate_limited"
    assert err.value.retry_at == clock() + blocked_for
    assert up.blocked_until["deployments"] == clock() + blocked_for
    await up.aclose()


async def test_a_far_reset_gives_the_refresh_up_and_the_loop_sleeps_until_it(
    tmp_path: Path,
) -> None:
    clock = SimClock()
    cfg, secrets = load(write_config(tmp_path))
    reset = {"X-RateLimit-Reset": str(int(clock()) + 300)}
    transport = httpx.MockTransport(_answer_429(reset, {}))
    e = VercelExporter(cfg, secrets, transport=transport, clock=clock, sleep=clock.sleep)
    assert e.deployments is not None
    wait = await e.deployments.loop.refresh_once()
    assert clock.slept == [], "more than two minutes away: not waited for inside a refresh"
    assert wait == 300.0
    text = render(e).decode()
    assert value(text, "vercel_api_requests_total", endpoint="deployments", code="429") == 1
    assert value(text, "vercel_api_errors_total", reason="rate_limited") == 1
    await e.aclose()


@pytest.mark.parametrize("fault", ["500", "timeout_like", "malformed", "truncated", "shape"])
async def test_failures_change_nothing_and_stale_data_is_dropped(rig: Rig, fault: str) -> None:
    now = rig.clock()
    rig.state.add([dep("dpl_1", now - 600, prod=True)])
    assert await rig.refresh()
    rig.state.add([dep("dpl_2", now + 1, build=10.0, queue=1.0, prod=True)])
    rig.clock.t += 60
    rig.state.faults = ["502"] * 3 if fault in ("500", "timeout_like") else [fault]
    assert not await rig.refresh()
    text = rig.metrics()
    reason = {
        "500": "server",
        "timeout_like": "server",
        "malformed": "malformed",
        "truncated": "malformed",
        "shape": "malformed",
    }[fault]
    assert value(text, "vercel_api_errors_total", reason=reason)
    assert (
        value(text, "vercel_deployments_total", project="web", target="production", state="ready")
        == 0
    )
    assert value(text, "vercel_api_refreshes_total", result="failure") == 1
    # Past stale_after with no success: the exporter says so and stops serving old gauges.
    rig.state.faults = ["502"] * 100
    rig.clock.t += 400
    assert not await rig.refresh()
    text = rig.metrics()
    assert value(text, "vercel_up") == 0
    assert prod_info(text) is None
    assert value(text, "vercel_api_last_success_timestamp_seconds", project="web") == now
    # Recovery: the deployment that finished meanwhile is counted once.
    rig.state.faults = []
    assert await rig.refresh()
    text = rig.metrics()
    assert value(text, "vercel_up") == 1
    assert (
        value(text, "vercel_deployments_total", project="web", target="production", state="ready")
        == 1
    )


async def test_a_deployment_that_vanishes_is_not_counted(rig: Rig) -> None:
    now = rig.clock()
    rig.state.add([dep("dpl_v", now - 20, build=300.0)])
    assert await rig.refresh()
    assert (
        value(rig.metrics(), "vercel_deployments_in_progress", project="web", target="preview") == 1
    )
    rig.state.remove("dpl_v")
    rig.clock.t += 30
    assert await rig.refresh()
    text = rig.metrics()
    assert value(text, "vercel_deployments_in_progress", project="web", target="preview") == 0
    assert value(text, "vercel_deployments_vanished_total", project="web") == 1
    assert (
        sum(
            value(text, "vercel_deployments_total", project="web", target="preview", state=s) or 0
            for s in ("ready", "error", "canceled", "deleted")
        )
        == 0
    )


async def test_clock_skew_between_vercel_timestamps_is_counted_not_observed(rig: Rig) -> None:
    now = rig.clock()
    rig.state.add([dep("dpl_s", now - 100, build=60.0, queue=1.0)])
    assert await rig.refresh()
    skewed = dep("dpl_skew", now + 5, build=-30.0, queue=40.0)
    rig.state.add([skewed])
    rig.clock.t += 120
    assert await rig.refresh()
    text = rig.metrics()
    assert value(text, "vercel_api_records_invalid_total", project="web", reason="clock_skew") == 1
    assert (
        value(
            text, "vercel_deployment_build_duration_seconds_count", project="web", target="preview"
        )
        is None
    )
    assert (
        value(text, "vercel_deployments_total", project="web", target="preview", state="ready") == 1
    )


async def test_bad_token_is_an_auth_error_and_the_token_is_never_shown(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.state.token = "another-token"
    caplog.set_level(logging.DEBUG)
    assert not await rig.refresh()
    text = rig.metrics()
    assert value(text, "vercel_api_errors_total", reason="auth") == 1
    assert value(text, "vercel_api_requests_total", endpoint="deployments", code="403") == 1
    assert value(text, "vercel_up") == 0
    for blob in (text, caplog.text, repr(caplog.records)):
        assert TOKEN not in blob


async def test_refresh_loop_survives_the_api_being_down(tmp_path: Path) -> None:
    # Nothing listens on port 9: connection refused on every request.
    cfg, secrets = load(write_config(tmp_path, base_url="http://127.0.0.1:9"))
    clock = SimClock()
    e = VercelExporter(cfg, secrets, clock=clock, sleep=clock.sleep)
    assert e.deployments is not None
    assert not await e.deployments.poll()
    text = render(e).decode()
    assert value(text, "vercel_api_errors_total", reason="connect") == 3
    assert value(text, "vercel_up") == 0
    assert value(text, "vercel_api_refreshes_total", result="failure") == 1
    await e.aclose()


async def test_deployments_vanishing_between_pages_are_neither_lost_nor_doubled(rig: Rig) -> None:
    now = rig.clock()
    rig.state.add(timeline(PROJECT_ID, "web", now - 86400, now - 600, 400.0))  # 215: three pages
    building = dep("dpl_building", now - 30, build=300.0)
    rig.state.add([building])

    def delete_during_paging(state: VercelApiState) -> None:
        if len(state.requests) == 1:  # after the first page: one from page 2 and the building one
            state.remove(state.deployments[150].uid)
            state.remove("dpl_building")

    rig.state.after_request = delete_during_paging
    assert await rig.refresh()
    listed = {q.get("until") for q in rig.requests()}
    assert len(listed) == 3, "paging by `until` timestamps: a deletion shifts no page"
    rig.state.after_request = None
    ps = rig.source.projects[PROJECT_ID]
    assert "dpl_building" in ps.in_flight  # seen on page 1, before it was deleted
    rig.clock.t += 30
    assert await rig.refresh()
    text = rig.metrics()
    assert value(text, "vercel_deployments_vanished_total", project="web") == 1
    assert value(text, "vercel_deployments_in_progress", project="web", target="preview") == 0


async def test_a_slow_api_times_out_and_the_next_attempt_succeeds(tmp_path: Path) -> None:
    clock = SimClock()
    state = VercelApiState(token=TOKEN, team_id=TEAM, clock=clock, faults=["timeout"])
    state.add([dep("dpl_1", clock() - 600, prod=True)])
    server = TestServer(make_app(state))
    await server.start_server()
    rig = Rig(
        tmp_path, clock, state, str(server.make_url("")).rstrip("/"), api={"timeout": "500ms"}
    )
    try:
        assert await rig.refresh()
        text = rig.metrics()
        assert value(text, "vercel_api_errors_total", reason="timeout") == 1
        assert value(text, "vercel_api_requests_total", endpoint="deployments", code="error") == 1
        assert prod_info(text) == 1
    finally:
        await rig.exporter.aclose()
        await server.close()


async def test_the_app_polls_in_the_background_and_serves_the_snapshot(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """Through the shared exporter app: the refresh loop starts with the app, /metrics renders
    (off the event loop) what it last published, and it stops with the app."""
    state = VercelApiState(token=TOKEN, team_id=TEAM)
    state.add([dep("dpl_1", state.clock() - 600, prod=True)])
    server = TestServer(make_app(state))
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        cfg, secrets = load(write_config(tmp_path, base_url=url))
        exporter = VercelExporter(cfg, secrets)
        client = await aiohttp_client(vercel_app(exporter))
        for _ in range(100):
            if state.requests:
                break
            await asyncio.sleep(0.05)
        resp = await client.get("/metrics")
        assert resp.status == 200
        text = await resp.text()
        assert value(text, "vercel_up") == 1
        assert value(text, "vercel_api_refreshes_total", result="success") == 1
        assert prod_info(text) == 1
        assert (await client.get("/-/ready")).status == 200
        assert "Deployments polling: on" in await (await client.get("/")).text()
        await client.close()
        assert exporter.deployments is not None
        assert exporter.deployments.upstream.client.is_closed
    finally:
        await server.close()
