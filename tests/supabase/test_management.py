"""The Management API source (client, refresh loop, snapshot, collector) against the strict fake:
discovery, backups, PITR, health, limits, staleness."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.upstream import UpstreamError
from exporters.supabase import management
from exporters.supabase.app import SupabaseExporter
from exporters.supabase.config import Management, SupabaseConfig
from exporters.supabase.management import (
    ManagementSource,
    parse_backups,
    parse_health,
    parse_projects,
)
from fakes.supabase_api import FakeProject, SupabaseApiState, make_app
from fakes.vercel_setup import SimClock
from tests.supabase.helpers import Samples, samples, scrape_text

TOKEN = "sbp_SECRET_token_0123456789"


class Rig:
    def __init__(
        self, state: SupabaseApiState, source: ManagementSource, clock: SimClock, tmp: Path
    ) -> None:
        self.state, self.source, self.clock, self.tmp = state, source, clock, tmp
        cfg = SupabaseConfig(management=source.cfg)
        self.exporter = SupabaseExporter(cfg, management=source)

    async def refresh(self) -> bool:
        """One turn of the background loop; True when every request succeeded."""
        await self.source.loop.refresh_once()
        return self.source.loop.failures_in_a_row == 0

    async def text(self) -> str:
        return await scrape_text(self.exporter)

    async def metrics(self) -> Samples:
        return samples(await self.text())

    async def value(self, metric: str, **labels: str) -> float | None:
        return (await self.metrics()).get((metric, frozenset(labels.items())))


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
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
    source = ManagementSource(cfg, clock=clock, sleep=clock.sleep)
    rig = Rig(state, source, clock, tmp_path)
    yield rig
    await rig.exporter.aclose()
    await server.close()


async def test_discovers_active_projects_and_reports_backups_pitr_and_health(rig: Rig) -> None:
    assert await rig.refresh()
    ref = "liveproject000000001"
    paths = [p for p, _ in rig.state.requests]
    assert not any("pausedproject" in p for p in paths), "paused projects are not asked"
    health_q = next(q for p, q in rig.state.requests if p.endswith("/health"))
    assert health_q["services"] == ["auth", "db", "realtime", "rest", "storage"]
    assert await rig.value("supabase_management_up") == 1
    assert await rig.value(
        "supabase_backup_last_completed_timestamp_seconds", project=ref
    ) == pytest.approx(rig.clock() - 3 * 3600, abs=1)
    assert await rig.value("supabase_backups", project=ref, status="completed") == 7
    assert await rig.value("supabase_pitr_enabled", project=ref) == 1
    assert await rig.value("supabase_pitr_required", project=ref) == 1
    assert await rig.value("supabase_pitr_window_seconds", project=ref) == pytest.approx(
        6 * 86400 + 3 * 3600, abs=2
    )
    # The fake's oldest completed backup (seven daily ones, the newest 3 h old).
    assert await rig.value(
        "supabase_pitr_earliest_timestamp_seconds", project=ref
    ) == pytest.approx(rig.clock() - 6 * 86400 - 3 * 3600, abs=2)
    assert await rig.value("supabase_service_healthy", project=ref, service="db") == 1
    assert (
        await rig.value(
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
    assert await rig.refresh()
    ref = p.ref
    failed = await rig.value("supabase_backup_last_failed_timestamp_seconds", project=ref)
    completed = await rig.value("supabase_backup_last_completed_timestamp_seconds", project=ref)
    assert failed is not None
    assert completed is not None
    assert failed > completed
    assert await rig.value("supabase_service_healthy", project=ref, service="storage") == 0
    assert (
        await rig.value(
            "supabase_service_status", project=ref, service="storage", status="unhealthy"
        )
        == 1
    )


async def test_rate_limit_reset_is_a_delta_and_is_waited_out(rig: Rig) -> None:
    rig.state.faults = ["", "429"]  # projects fine, then backups answers 429 with Reset: 5
    assert not await rig.refresh()
    assert await rig.value("supabase_management_errors_total", reason="rate_limited") == 1
    asked = len(rig.state.requests)
    assert not await rig.refresh()  # within the 5 s: backups is not asked again
    assert not any(p.endswith("/backups") for p, _ in rig.state.requests[asked:])
    rig.clock.t += 6
    assert await rig.refresh()


async def test_failures_keep_the_snapshot_until_it_is_stale(rig: Rig) -> None:
    ref = "liveproject000000001"
    assert await rig.refresh()
    rig.state.faults = ["500", "malformed", "500"]
    rig.clock.t += 60
    assert not await rig.refresh()
    assert await rig.value("supabase_management_errors_total", reason="server") == 1
    assert await rig.value("supabase_pitr_enabled", project=ref) == 1, "the last good snapshot"
    rig.state.faults = ["500"] * 100
    rig.clock.t += 700
    await rig.refresh()
    assert await rig.value("supabase_management_up") == 0
    assert await rig.value("supabase_pitr_enabled", project=ref) is None, "stale data is dropped"


async def test_one_failing_project_does_not_hide_the_others(rig: Rig) -> None:
    live, other = "liveproject000000001", "otherproject00000001"
    rig.state.projects[other] = FakeProject(other, "blog", pitr=False)
    rig.state.projects[other].daily_backups(rig.clock())
    assert await rig.refresh()
    assert await rig.value("supabase_pitr_enabled", project=other) == 0
    # From now on the other project's backups fail, for longer than stale_after.
    rig.clock.t += 700
    rig.state.faults = ["", "", "", "500"]  # projects, live backups, live health, other backups
    assert not await rig.refresh()
    assert await rig.value("supabase_pitr_enabled", project=live) == 1, "refreshed: served"
    assert await rig.value("supabase_pitr_enabled", project=other) is None, "stale: dropped"
    assert await rig.value("supabase_management_up") == 0, "no refresh succeeded in 700 s"
    assert rig.source.known() == [live, other], "/sd still offers both"
    assert await rig.refresh()
    assert await rig.value("supabase_management_up") == 1


async def test_a_rotated_token_is_read_without_a_restart(rig: Rig) -> None:
    assert await rig.refresh()
    rig.state.token = "sbp_ROTATED_token_987654321"
    assert not await rig.refresh()
    refused = await rig.value("supabase_management_errors_total", reason="auth")
    assert refused
    token = rig.tmp / "token"
    token.write_text(rig.state.token + "\n")
    st = token.stat()
    os.utime(token, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert await rig.refresh()
    assert await rig.value("supabase_management_errors_total", reason="auth") == refused


async def test_a_bug_in_a_refresh_is_a_failed_refresh_not_a_dead_loop(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(doc: object, wanted: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(management, "parse_health", broken)
    wait = await rig.source.loop.refresh_once()
    assert wait > 0
    assert rig.source.loop.errors["other"] == 1
    assert "management refresh crashed" in caplog.text


async def test_a_wrong_shape_counts_as_malformed(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    assert await rig.refresh()
    # Health answers JSON that is not the documented list: a malformed answer, counted like a
    # body that is not JSON; the project keeps its last good state.
    monkeypatch.setattr(management, "parse_health", lambda _, wanted: parse_health({}, wanted))
    assert not await rig.refresh()
    assert await rig.value("supabase_management_errors_total", reason="malformed") == 1
    ref = "liveproject000000001"
    assert await rig.value("supabase_service_healthy", project=ref, service="db") == 1


def test_the_collector_is_pure_and_renders_only_what_it_is_given() -> None:
    from exporters.supabase.management import (
        Backups,
        ManagementView,
        ProjectSnapshot,
        collect,
    )

    view = ManagementView(
        (
            ProjectSnapshot(
                "p1",
                backups=Backups(counts=(("COMPLETED", 1),), pitr=None),
                services=(("db", "COMING_UP"),),
            ),
        )
    )
    first = [(f.name, list(f.samples)) for f in collect(view)]
    second = [(f.name, list(f.samples)) for f in collect(view)]
    assert first == second, "rendering twice gives the same, and changes nothing"
    got = {f.name: f.samples for f in collect(view)}
    assert got["supabase_pitr_enabled"] == [], "unknown is left out, not 0"
    assert [s.value for s in got["supabase_service_healthy"]] == [0.0]


async def test_a_bad_token_is_reported_and_never_shown(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.state.token = "another"
    caplog.set_level(logging.DEBUG)
    assert not await rig.refresh()
    assert await rig.value("supabase_management_errors_total", reason="auth") >= 1  # type: ignore[operator]
    text = await rig.text()
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

    async with httpx.AsyncClient(base_url=str(rig.source.upstream.client.base_url)) as client:
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
    for parse in (parse_backups, lambda d: parse_health(d, ["db"]), parse_projects):
        try:
            parse(doc)
        except UpstreamError as exc:
            assert exc.reason == "malformed"


async def test_a_full_refresh_produces_exactly_the_declared_series(rig: Rig) -> None:
    from tests.supabase.series import MANAGEMENT_SAMPLE_NAMES as SAMPLE_NAMES

    rig.state.projects["liveproject000000001"].backups.insert(0, (rig.clock() - 60, "FAILED"))
    assert await rig.refresh()
    names = {n for (n, _) in await rig.metrics()}
    # The shared app's own two; no unlabelled supabase_up (that one is per database), and no
    # supabase_management_refresh_errors_total beside supabase_management_errors_total.
    assert names - SAMPLE_NAMES == {"supabase_build_info", "supabase_scrape_duration_seconds"}
    assert names >= SAMPLE_NAMES


@pytest.mark.integration
async def test_management_output_passes_promtool(rig: Rig, promtool: str) -> None:
    import subprocess

    assert await rig.refresh()
    text = (await rig.text()).encode()
    res = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
