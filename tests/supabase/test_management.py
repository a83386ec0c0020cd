"""The Management API poller against the strict fake: discovery, backups, PITR, health, limits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters.supabase.app import render
from exporters.supabase.config import Management
from exporters.supabase.management import (
    ApiError,
    ManagementPoller,
    ProjectSnapshot,
    parse_backups,
    parse_health,
)
from fakes.supabase_api import FakeProject, SupabaseApiState, make_app
from tests.vercel.helpers import SimClock, samples

TOKEN = "sbp_SECRET_token_0123456789"


class Rig:
    def __init__(self, state: SupabaseApiState, poller: ManagementPoller, clock: SimClock) -> None:
        self.state, self.poller, self.clock = state, poller, clock

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return samples(render({}, self.poller).decode())

    def value(self, metric: str, **labels: str) -> float | None:
        return self.metrics().get((metric, frozenset(labels.items())))


@pytest.fixture
async def rig(tmp_path: Any) -> AsyncIterator[Rig]:
    clock = SimClock()
    state = SupabaseApiState(token=TOKEN, clock=clock)
    live = FakeProject("liveproject000000001", "shop")
    live.daily_backups(clock())
    state.projects = {
        live.ref: live,
        "pausedproject0000001": FakeProject("pausedproject0000001", "old", status="INACTIVE"),
    }
    server = TestServer(make_app(state))
    await server.start_server()
    (tmp_path / "token").write_text(TOKEN)
    cfg = Management.model_validate(
        {
            "base_url": str(server.make_url("")).rstrip("/"),
            "token_file": str(tmp_path / "token"),
            "projects": [{"ref": "liveproject000000001", "pitr_required": True}],
        }
    )
    poller = ManagementPoller(cfg, TOKEN, clock=clock, sleep=clock.sleep)
    yield Rig(state, poller, clock)
    await poller.aclose()
    await server.close()


async def test_discovers_active_projects_and_reports_backups_pitr_and_health(rig: Rig) -> None:
    assert await rig.poller.refresh()
    ref = "liveproject000000001"
    paths = [p for p, _ in rig.state.requests]
    assert not any("pausedproject" in p for p in paths), "paused projects are not asked"
    health_q = next(q for p, q in rig.state.requests if p.endswith("/health"))
    assert health_q["services"] == ["auth", "db", "realtime", "rest", "storage"]
    assert rig.value("supabase_management_up") == 1
    assert rig.value(
        "supabase_backup_last_completed_timestamp_seconds", project=ref
    ) == pytest.approx(rig.clock() - 3 * 3600, abs=1)
    assert rig.value("supabase_backups", project=ref, status="completed") == 7
    assert rig.value("supabase_pitr_enabled", project=ref) == 1
    assert rig.value("supabase_pitr_required", project=ref) == 1
    assert rig.value("supabase_pitr_window_seconds", project=ref) == pytest.approx(
        6 * 86400 + 3 * 3600, abs=2
    )
    assert rig.value("supabase_service_healthy", project=ref, service="db") == 1
    assert (
        rig.value(
            "supabase_project_info",
            project=ref,
            name="shop",
            region="us-east-1",
            status="ACTIVE_HEALTHY",
        )
        == 1
    )


async def test_a_failed_backup_and_an_unhealthy_service_show(rig: Rig) -> None:
    p = rig.state.projects["liveproject000000001"]
    p.backups.insert(0, (rig.clock() - 600, "FAILED"))
    p.health["storage"] = "UNHEALTHY"
    assert await rig.poller.refresh()
    ref = p.ref
    failed = rig.value("supabase_backup_last_failed_timestamp_seconds", project=ref)
    completed = rig.value("supabase_backup_last_completed_timestamp_seconds", project=ref)
    assert failed is not None
    assert completed is not None
    assert failed > completed
    assert rig.value("supabase_service_healthy", project=ref, service="storage") == 0
    assert (
        rig.value("supabase_service_status", project=ref, service="storage", status="unhealthy")
        == 1
    )


async def test_rate_limit_reset_is_a_delta_and_is_waited_out(rig: Rig) -> None:
    rig.state.faults = ["", "429"]  # projects fine, then backups answers 429 with Reset: 5
    assert not await rig.poller.refresh()
    assert rig.value("supabase_management_errors_total", reason="rate_limited") == 1
    asked = len(rig.state.requests)
    assert not await rig.poller.refresh()  # within the 5 s: backups is not asked again
    assert not any(p.endswith("/backups") for p, _ in rig.state.requests[asked:])
    rig.clock.t += 6
    assert await rig.poller.refresh()


async def test_failures_keep_the_snapshot_until_it_is_stale(rig: Rig) -> None:
    ref = "liveproject000000001"
    assert await rig.poller.refresh()
    rig.state.faults = ["500", "malformed", "500"]
    rig.clock.t += 60
    assert not await rig.poller.refresh()
    assert rig.value("supabase_management_errors_total", reason="server") == 1
    assert rig.value("supabase_pitr_enabled", project=ref) == 1, "the last good snapshot"
    rig.state.faults = ["500"] * 100
    rig.clock.t += 700
    await rig.poller.refresh()
    assert rig.value("supabase_management_up") == 0
    assert rig.value("supabase_pitr_enabled", project=ref) is None, "stale data is dropped"


async def test_a_bad_token_is_reported_and_never_shown(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.state.token = "another"
    caplog.set_level(logging.DEBUG)
    assert not await rig.poller.refresh()
    assert rig.value("supabase_management_errors_total", reason="auth") >= 1  # type: ignore[operator]
    text = render({}, rig.poller).decode()
    assert TOKEN not in text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/projects", {}, 401),
        ("/v1/projects/liveproject000000001/health", {"Authorization": f"Bearer {TOKEN}"}, 400),
        (
            "/v1/projects/liveproject000000001/health?services=nope",
            {"Authorization": f"Bearer {TOKEN}"},
            400,
        ),
        ("/v1/projects/unknown/database/backups", {"Authorization": f"Bearer {TOKEN}"}, 404),
        (
            "/v1/projects/liveproject000000001/health?services=db&services=auth",
            {"Authorization": f"Bearer {TOKEN}"},
            200,
        ),
    ],
)
async def test_the_fake_is_strict(
    rig: Rig, path: str, headers: dict[str, str], status: int
) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=str(rig.poller.client.base_url)) as client:
        resp = await client.get(path, headers=headers)
        assert resp.status_code == status
        assert int(resp.headers.get("X-RateLimit-Reset", "60")) <= 60


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
json_values = st.recursive(
    scalars,
    lambda i: st.lists(i, max_size=4) | st.dictionaries(st.text(max_size=10), i, max_size=4),
    max_leaves=20,
)
backup_like = st.dictionaries(
    st.sampled_from(["backups", "pitr_enabled", "walg_enabled", "physical_backup_data", "region"]),
    json_values
    | st.lists(
        st.dictionaries(st.sampled_from(["status", "inserted_at", "id"]), json_values), max_size=3
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=json_values | backup_like)
def test_parsers_take_any_json(doc: Any) -> None:
    for parse in (
        lambda d: parse_backups(d, ProjectSnapshot("p")),
        lambda d: parse_health(d, ["db"]),
    ):
        try:
            parse(doc)
        except ApiError as exc:
            assert exc.reason == "malformed"


async def test_a_full_refresh_produces_exactly_the_declared_series(rig: Rig) -> None:
    from exporters.supabase.management import SAMPLE_NAMES

    rig.state.projects["liveproject000000001"].backups.insert(0, (rig.clock() - 60, "FAILED"))
    assert await rig.poller.refresh()
    names = {n for (n, _) in rig.metrics()} - {"supabase_build_info"}
    assert names == SAMPLE_NAMES


@pytest.mark.integration
async def test_management_output_passes_promtool(rig: Rig, promtool: str) -> None:
    import subprocess

    assert await rig.poller.refresh()
    text = render({}, rig.poller)
    res = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
