"""The mirror (`record:`): every backup the Management API lists is one backup_status row, written
once and updated in place as its status moves, with the project's retention; a database that is
down is a metric, never a failed refresh or scrape, and the rows arrive once it is back. Real
PostgreSQL (a fresh, migrated database per test) against the strict fake Management API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestServer
from psycopg.rows import dict_row
from pydantic import ValidationError

from exporters.supabase.app import SupabaseExporter
from exporters.supabase.backup_record import MAX_ENTRIES, BackupRecord
from exporters.supabase.config import ManagedProject, Management, Record, SupabaseConfig
from exporters.supabase.management import ManagementSource, parse_backups
from fakes.supabase_api import FakeProject, SupabaseApiState, backup_id, iso, make_app
from fakes.vercel_setup import SimClock
from tests.supabase.helpers import Samples, samples, scrape_text
from tests.supabase.series import MANAGEMENT_SAMPLE_NAMES, RECORD_SAMPLE_NAMES

TOKEN = "sbp_SECRET_token_0123456789"
PASSWORD = "pg-SECRET-password-0123456789"
LIVE = "liveproject000000001"
DAY = 86400.0


class Rig:
    def __init__(
        self, state: SupabaseApiState, source: ManagementSource, clock: SimClock, dsn: str
    ) -> None:
        self.state, self.source, self.clock, self.dsn = state, source, clock, dsn
        assert source.record is not None
        self.record: BackupRecord = source.record
        self.exporter = SupabaseExporter(SupabaseConfig(management=source.cfg), management=source)

    @property
    def live(self) -> FakeProject:
        return self.state.projects[LIVE]

    async def refresh(self) -> bool:
        """One turn of the refresh loop, then of the mirror's task (which the app runs on its
        own); True when the refresh succeeded (whatever the write did)."""
        await self.source.loop.refresh_once()
        ok = self.source.loop.failures_in_a_row == 0
        await self.record.flush()
        return ok

    async def metrics(self) -> Samples:
        return samples(await scrape_text(self.exporter))

    async def value(self, metric: str, **labels: str) -> float | None:
        return (await self.metrics()).get((metric, frozenset(labels.items())))

    async def rows(self, target: str = f"supabase:{LIVE}") -> list[dict[str, Any]]:
        async with (
            await psycopg.AsyncConnection.connect(self.dsn) as conn,
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(
                "SELECT * FROM backup_status WHERE backup_target = %s ORDER BY started_at DESC",
                (target,),
            )
            return await cur.fetchall()

    async def row(self, bid: int) -> dict[str, Any]:
        found = [r for r in await self.rows() if r["source_key"] == f"supabase:{LIVE}:{bid}"]
        assert len(found) == 1, found
        return found[0]


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[RigFactory]:
    made: list[tuple[Rig, TestServer]] = []

    async def make(
        dsn: str,
        *,
        record: dict[str, Any] | None = None,
        projects: list[dict[str, Any]] | None = None,
    ) -> Rig:
        clock = SimClock()
        state = SupabaseApiState(token=TOKEN, clock=clock)
        live = FakeProject(LIVE, "shop")
        live.daily_backups(clock())
        state.projects = {live.ref: live}
        server = TestServer(make_app(state))
        await server.start_server()
        (tmp_path / "token").write_text(TOKEN)
        (tmp_path / "pgpass").write_text(PASSWORD)  # trust auth: any password is accepted
        cfg = Management.model_validate(
            {
                "base_url": str(server.make_url("")).rstrip("/"),
                "token_file": str(tmp_path / "token"),
                "projects": projects or [{"ref": LIVE, "pitr_required": True}],
            }
        )
        rec = Record.model_validate(
            {"conninfo": dsn, "password_file": str(tmp_path / "pgpass"), **(record or {})}
        )
        source = ManagementSource(
            cfg, clock=clock, sleep=clock.sleep, record=BackupRecord(rec, cfg.projects, clock=clock)
        )
        rig = Rig(state, source, clock, dsn)
        made.append((rig, server))
        return rig

    yield make
    for rig, server in made:
        await rig.exporter.aclose()
        await server.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def forward(port: int, to: tuple[str, int] = ("127.0.0.1", 5432)) -> AsyncIterator[None]:
    """The database reachable at `port` again: a TCP forwarder to the real server."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*to)
        for t in (
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for t in list(tasks):
            t.cancel()
        await server.wait_closed()


# --- exactly once --------------------------------------------------------------------------


@pytest.mark.integration
async def test_the_list_is_mirrored_exactly_once_across_refreshes(
    make_rig: RigFactory, migrated_dsn: str
) -> None:
    rig = await make_rig(migrated_dsn)
    for _ in range(4):
        assert await rig.refresh()
        rig.clock.t += 60
    rows = await rig.rows()
    assert len(rows) == 7
    assert len({r["source_key"] for r in rows}) == 7
    assert {r["source_key"] for r in rows} == {
        f"supabase:{LIVE}:{backup_id(t)}" for t, _ in rig.live.backups
    }
    newest = rows[0]
    assert newest["started_at"] == datetime.fromisoformat(iso(rig.live.backups[0][0]))
    assert newest["completed_at"] == newest["started_at"]
    assert newest["backup_status"] == "completed"
    assert newest["backup_type"] == "database"
    assert newest["backup_method"] == "supabase_physical"  # the fake's project has PITR
    assert newest["backup_location"] == f"supabase:{LIVE}"
    assert newest["removed_at"] is None
    assert newest["error_message"] is None
    # Only the first refresh wrote: an unchanged backup writes nothing.
    assert await rig.value("supabase_backup_record_changes_total", change="inserted") == 7
    assert await rig.value("supabase_backup_record_changes_total", change="updated") == 0
    assert await rig.value("supabase_backup_record_up") == 1
    assert (
        await rig.value("supabase_backup_record_last_success_timestamp_seconds") == rig.clock() - 60
    ), "the last refresh's write"
    # The next day's backup is one more row; the others stay as they were.
    rig.live.backups.insert(0, (rig.clock() - 60, "COMPLETED"))
    assert await rig.refresh()
    assert await rig.refresh()
    assert len(await rig.rows()) == 8
    assert await rig.value("supabase_backup_record_changes_total", change="inserted") == 8


@pytest.mark.integration
async def test_a_backup_the_api_stops_listing_is_marked_removed(
    make_rig: RigFactory, migrated_dsn: str
) -> None:
    """Supabase drops backups past the plan's retention from the list without a REMOVED
    status: the row stays, as history, with removed_at (not counted as retained)."""
    rig = await make_rig(migrated_dsn)
    assert await rig.refresh()
    oldest_t, _ = rig.live.backups.pop()  # the oldest ages out
    assert await rig.refresh()
    gone = await rig.row(backup_id(oldest_t))
    assert gone["removed_at"] is not None
    assert gone["backup_status"] == "completed"
    assert sum(r["removed_at"] is None for r in await rig.rows()) == 6
    assert await rig.value("supabase_backup_record_changes_total", change="removed") == 1
    assert await rig.refresh()  # nothing more to mark
    assert await rig.value("supabase_backup_record_changes_total", change="removed") == 1


@pytest.mark.integration
async def test_an_incomplete_listing_marks_only_what_vanished_inside_it(
    make_rig: RigFactory, migrated_dsn: str
) -> None:
    """When the mirror wrote only the newest MAX_ENTRIES, backups older than the oldest of
    those may still be listed: only one missing from within the written range is gone."""
    from schema.backups import mark_unlisted_supabase_backups

    rig = await make_rig(migrated_dsn)
    assert await rig.refresh()
    ids = [backup_id(t) for t, _ in rig.live.backups]  # newest first, 7
    async with await psycopg.AsyncConnection.connect(migrated_dsn) as conn:
        # The newest three written, the second of them missing; the four older not written.
        marked = await mark_unlisted_supabase_backups(conn, LIVE, [ids[0], ids[2]], complete=False)
        await conn.commit()
    assert marked == 1
    assert (await rig.row(ids[1]))["removed_at"] is not None
    for bid in (ids[0], *ids[2:]):
        assert (await rig.row(bid))["removed_at"] is None


@pytest.mark.integration
async def test_a_logical_backup_is_recorded_as_such(
    make_rig: RigFactory, migrated_dsn: str
) -> None:
    rig = await make_rig(migrated_dsn)
    rig.live.pitr = False
    assert await rig.refresh()
    assert {r["backup_method"] for r in await rig.rows()} == {"supabase_logical"}


# --- status moves --------------------------------------------------------------------------


@pytest.mark.integration
async def test_status_moves_update_the_same_row(make_rig: RigFactory, migrated_dsn: str) -> None:
    rig = await make_rig(migrated_dsn)
    rig.live.backups.insert(0, (rig.clock() - 120, "PENDING"))
    assert await rig.refresh()
    bid = backup_id(rig.live.backups[0][0])
    pending = await rig.row(bid)
    assert pending["backup_status"] == "in_progress"
    assert pending["completed_at"] is None
    assert pending["expires_at"] is None

    rig.clock.t += 60
    assert rig.live.set_backup_status(0, "COMPLETED") == bid
    assert await rig.refresh()
    completed = await rig.row(bid)
    assert completed["id"] == pending["id"], "updated in place"
    assert completed["backup_status"] == "completed"
    assert completed["completed_at"] == completed["started_at"]
    assert completed["expires_at"] == completed["completed_at"] + timedelta(days=7)
    assert completed["removed_at"] is None

    rig.clock.t += 60
    rig.live.set_backup_status(0, "REMOVED")
    assert await rig.refresh()
    removed = await rig.row(bid)
    assert removed["id"] == pending["id"]
    assert removed["backup_status"] == "completed", "a removed backup existed: history"
    assert removed["removed_at"] is not None
    assert await rig.refresh()
    assert (await rig.row(bid))["removed_at"] == removed["removed_at"], "removed once"

    rig.live.set_backup_status(1, "FAILED")
    assert await rig.refresh()
    failed = await rig.row(backup_id(rig.live.backups[1][0]))
    assert failed["backup_status"] == "failed"
    assert failed["error_message"]
    assert "FAILED" in failed["error_message"]
    assert failed["completed_at"] is None

    # Another failure state: still failed, and the message says which.
    rig.live.set_backup_status(1, "CANCELLED")
    assert await rig.refresh()
    cancelled = await rig.row(backup_id(rig.live.backups[1][0]))
    assert cancelled["backup_status"] == "failed"
    assert "CANCELLED" in cancelled["error_message"]

    assert len(await rig.rows()) == 8, "no move added a row"
    assert await rig.value("supabase_backup_record_changes_total", change="inserted") == 8
    assert await rig.value("supabase_backup_record_changes_total", change="updated") == 4


# --- retention -----------------------------------------------------------------------------


@pytest.mark.integration
async def test_retention_from_the_config_sets_the_expiry(
    make_rig: RigFactory, migrated_dsn: str
) -> None:
    rig = await make_rig(
        migrated_dsn,
        record={"plan": "team"},
        projects=[
            {"ref": LIVE, "backup_retention_days": 3},
            {"ref": "enterpriseproject001", "plan": "enterprise"},
        ],
    )
    for ref in ("enterpriseproject001", "discovered0000000001"):
        rig.state.projects[ref] = FakeProject(ref, ref)
        rig.state.projects[ref].daily_backups(rig.clock())
    assert await rig.refresh()
    for target, days in (
        (f"supabase:{LIVE}", 3),  # its own backup_retention_days
        ("supabase:enterpriseproject001", 30),  # its plan's
        ("supabase:discovered0000000001", 14),  # not listed: record's plan
    ):
        rows = await rig.rows(target)
        assert len(rows) == 7
        for r in rows:
            assert r["backup_retention_days"] == days
            assert r["expires_at"] == r["completed_at"] + timedelta(days=days)


def test_retention_resolution() -> None:
    default = Record(conninfo="host=db dbname=wsinfra user=wsinfra")
    assert default.retention_days(None) == 7, "the default plan is pro"
    assert Record.model_validate({"conninfo": "dbname=w", "plan": "free"}).retention_days(None) == 0
    assert (
        Record.model_validate(
            {"conninfo": "dbname=w", "plan": "team", "backup_retention_days": 9}
        ).retention_days(None)
        == 9
    )
    project = ManagedProject(ref="abc", plan="enterprise")
    assert default.retention_days(project) == 30
    assert (
        default.retention_days(
            ManagedProject(ref="abc", plan="enterprise", backup_retention_days=1)
        )
        == 1
    )
    with pytest.raises(ValidationError):
        ManagedProject.model_validate({"ref": "abc", "plan": "business"})
    with pytest.raises(ValidationError):
        Record.model_validate({"conninfo": "dbname=w password=x"})


def test_record_without_management_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="configure management"):
        SupabaseConfig.model_validate(
            {
                "databases": [{"name": "local", "conninfo": "dbname=w"}],
                "record": {"conninfo": "dbname=w"},
            }
        )


# --- the database down ---------------------------------------------------------------------


@pytest.mark.integration
async def test_a_database_outage_is_a_metric_and_the_rows_arrive_once_it_is_back(
    make_rig: RigFactory, migrated_dsn: str, promtool: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = closed_port()
    dsn = migrated_dsn.replace("port=5432", f"port={port}")
    assert dsn != migrated_dsn
    rig = await make_rig(dsn)
    rig.dsn = migrated_dsn  # where the test reads the rows

    assert await rig.refresh(), "the refresh succeeds with the record down"
    assert await rig.value("supabase_backup_record_up") == 0
    assert await rig.value("supabase_backup_record_errors_total", reason="unavailable") == 1
    assert await rig.value("supabase_backup_record_last_success_timestamp_seconds") is None
    # The scrape serves the Management API's figures as ever, and passes promtool.
    assert await rig.value("supabase_management_up") == 1
    assert await rig.value("supabase_backups", project=LIVE, status="completed") == 7
    text = await scrape_text(rig.exporter)
    res = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    assert await rig.rows() == []
    assert LIVE in rig.record.pending, "kept for the next refresh"

    # A backup moves while the database is down: the newest listing is what gets written.
    rig.clock.t += 60
    rig.live.set_backup_status(0, "FAILED")
    assert await rig.refresh()
    assert await rig.value("supabase_backup_record_errors_total", reason="unavailable") == 2

    async with forward(port):
        rig.clock.t += 60
        assert await rig.refresh()
        assert await rig.value("supabase_backup_record_up") == 1
        assert (
            await rig.value("supabase_backup_record_last_success_timestamp_seconds") == rig.clock()
        )
    rows = await rig.rows()
    assert len(rows) == 7
    assert rows[0]["backup_status"] == "failed"
    assert rig.record.pending == {}
    assert await rig.value("supabase_backup_record_errors_total", reason="unavailable") == 2
    assert PASSWORD not in caplog.text
    assert TOKEN not in caplog.text
    assert "backup record write failed" in caplog.text


@pytest.mark.integration
async def test_a_database_without_the_migrations_is_a_schema_error(
    make_rig: RigFactory, pg_dsn: str
) -> None:
    rig = await make_rig(pg_dsn)
    assert await rig.refresh()
    assert await rig.value("supabase_backup_record_up") == 0
    assert await rig.value("supabase_backup_record_errors_total", reason="schema") == 1


@pytest.mark.integration
async def test_a_refused_role_or_an_unreadable_password_file_is_denied(
    make_rig: RigFactory, migrated_dsn: str, tmp_path: Path
) -> None:
    rig = await make_rig(migrated_dsn.replace("user=postgres", "user=wsinfra_no_such_role"))
    assert await rig.refresh()
    assert await rig.value("supabase_backup_record_errors_total", reason="denied") == 1
    assert await rig.value("supabase_backup_record_up") == 0

    rig = await make_rig(migrated_dsn)
    (tmp_path / "pgpass").unlink()  # read at each connection
    assert await rig.refresh()
    assert await rig.value("supabase_backup_record_errors_total", reason="denied") == 1
    (tmp_path / "pgpass").write_text(PASSWORD)
    assert await rig.refresh()
    assert await rig.value("supabase_backup_record_up") == 1
    assert len(await rig.rows()) == 7


@pytest.mark.integration
async def test_the_background_task_writes_after_each_refresh(
    make_rig: RigFactory, migrated_dsn: str
) -> None:
    rig = await make_rig(migrated_dsn)
    (run,) = rig.exporter.background()
    task = asyncio.create_task(run())
    try:
        await rig.source.loop.refresh_once()
        await wait_for(lambda: rig.rows(), lambda rows: len(rows) == 7)
        rig.live.set_backup_status(0, "REMOVED")
        await rig.source.loop.refresh_once()
        await wait_for(lambda: rig.rows(), lambda rows: rows[0]["removed_at"] is not None)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(
    read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout: float = 20.0
) -> None:
    """Until `done(read())`, reading again as soon as the last read answered."""
    async with asyncio.timeout(timeout):
        while not done(await read()):
            await asyncio.sleep(0.02)


# --- the series ----------------------------------------------------------------------------


@pytest.mark.integration
async def test_a_refresh_with_the_record_produces_exactly_the_declared_series(
    make_rig: RigFactory, migrated_dsn: str
) -> None:
    rig = await make_rig(migrated_dsn)
    rig.live.backups.insert(0, (rig.clock() - 60, "FAILED"))
    assert await rig.refresh()
    names = {n for (n, _) in await rig.metrics()}
    declared = MANAGEMENT_SAMPLE_NAMES | RECORD_SAMPLE_NAMES
    assert names - declared == {"supabase_build_info", "supabase_scrape_duration_seconds"}
    assert names >= declared
    assert await rig.value("supabase_backup_record_skipped", project=LIVE, reason="invalid") == 0


# --- parsing (pure) ------------------------------------------------------------------------


def test_entries_without_an_integer_id_or_a_time_are_skipped_and_counted() -> None:
    at = "2026-05-01T03:00:00.000Z"
    backups = parse_backups(
        {
            "backups": [
                {"id": 7, "status": "COMPLETED", "inserted_at": at, "is_physical_backup": True},
                {"id": "8", "status": "COMPLETED", "inserted_at": at},
                {"id": True, "status": "COMPLETED", "inserted_at": at},
                {"id": 9.0, "status": "COMPLETED", "inserted_at": at},
                {"id": -1, "status": "COMPLETED", "inserted_at": at},
                {"status": "FAILED", "inserted_at": at},
                {"id": 10, "status": "FAILED", "inserted_at": "yesterday"},
                {"id": 11, "status": "PENDING", "inserted_at": "2026-05-02T03:00:00"},
            ]
        }
    )
    assert [(e.id, e.status, e.physical) for e in backups.entries] == [
        (11, "PENDING", False),
        (7, "COMPLETED", True),
    ]
    assert backups.entries[0].inserted_at == datetime(2026, 5, 2, 3, tzinfo=UTC), "UTC if naive"
    assert backups.invalid == 6
    assert backups.over_limit == 0
    assert dict(backups.counts)["COMPLETED"] == 5, "the aggregates count every entry as before"


def test_a_listing_is_bounded_to_the_newest_entries() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    items = [
        {
            "id": i,
            "status": "COMPLETED",
            "inserted_at": (start + timedelta(hours=i)).isoformat(),
        }
        for i in range(MAX_ENTRIES + 50)
    ]
    backups = parse_backups({"backups": items})
    assert len(backups.entries) == MAX_ENTRIES
    assert backups.entries[0].id == MAX_ENTRIES + 49, "newest first"
    assert backups.entries[-1].id == 50
    assert backups.over_limit == 50
    assert dict(backups.counts)["COMPLETED"] == MAX_ENTRIES + 50
