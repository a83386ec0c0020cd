"""The worker's loop against the real record: requests from the API claimed once, schedules,
retention, its own crashes, and the record going away (nothing lost, a metric says so)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from backups import figures
from backups.app import BackupExporter
from backups.worker import RecordUnavailable, Worker
from common.exporter import render
from common.upstream import UpstreamError
from schema import backups as record
from tests.backups.conftest import config

pytestmark = pytest.mark.integration


async def _rows(dsn: str, query: str, *args: Any) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(dsn, row_factory=dict_row) as conn:
        cur = await conn.execute(query, args)  # type: ignore[arg-type]
        return await cur.fetchall()


async def test_a_request_is_claimed_once_and_completed(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    cfg = config(migrated_dsn, source_dsn, shared_tmp / "dumps", schedule=None)
    async with await psycopg.AsyncConnection.connect(migrated_dsn) as conn:
        requested = await record.request_backup(
            conn,
            target="app",
            retention_days=7,
            location="pending",
            notes="before the migration",
            requested_by=None,
        )
        # A request for a target this worker does not back up stays for another worker.
        await record.request_backup(
            conn,
            target="other",
            retention_days=7,
            location="pending",
            notes=None,
            requested_by=None,
        )
        await conn.commit()
    a, b = Worker(cfg), Worker(cfg)
    await asyncio.gather(a.tick(), b.tick())
    [row] = await _rows(migrated_dsn, "SELECT * FROM backup_status WHERE id = %s", requested["id"])
    assert row["backup_status"] == "completed"
    assert row["backup_notes"] == "before the migration"
    assert row["backup_retention_days"] == 7
    assert row["claimed_at"] is not None
    done = a.stats.finished.get(("backup", "ok"), 0) + b.stats.finished.get(("backup", "ok"), 0)
    assert done == 1  # two workers, one backup
    [other] = await _rows(migrated_dsn, "SELECT * FROM backup_status WHERE backup_target = 'other'")
    assert other["claimed_at"] is None


async def test_schedule_backs_up_then_drills_then_waits(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    cfg = config(migrated_dsn, source_dsn, shared_tmp / "dumps", schedule="1h")
    worker = Worker(cfg)
    await worker.scheduled()
    await worker.scheduled()
    await worker.scheduled()  # nothing due any more
    backups = await _rows(migrated_dsn, "SELECT backup_status FROM backup_status")
    drills = await _rows(migrated_dsn, "SELECT status, trigger FROM restore_drills")
    assert backups == [{"backup_status": "completed"}]
    assert drills == [{"status": "passed", "trigger": "schedule"}]


async def test_retention_removes_expired_dumps_and_marks_their_rows(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    cfg = config(migrated_dsn, source_dsn, shared_tmp / "dumps", schedule=None)
    worker = Worker(cfg)
    old, new = await worker.backup_now(cfg.targets[0]), None
    assert await worker.backup(old)
    new = await worker.backup_now(cfg.targets[0])
    assert await worker.backup(new)
    async with await psycopg.AsyncConnection.connect(migrated_dsn) as conn:
        await conn.execute(
            "UPDATE backup_status SET completed_at = now() - interval '31 days' WHERE id = %s",
            (old.id,),
        )
        # A row pointing outside the location is never deleted from disk.
        outside = await record.start_backup(conn, target="app", retention_days=1, location="/etc")
        await conn.execute(
            "UPDATE backup_status SET backup_status = 'completed', completed_at = now() - interval '3 days'"
            " WHERE id = %s",
            (outside.id,),
        )
        await conn.commit()
    [old_row] = await _rows(migrated_dsn, "SELECT * FROM backup_status WHERE id = %s", old.id)
    assert Path(old_row["backup_location"]).is_dir()
    assert await worker.retention() == 1
    rows = {r["id"]: r for r in await _rows(migrated_dsn, "SELECT * FROM backup_status")}
    assert rows[old.id]["removed_at"] is not None
    assert not Path(old_row["backup_location"]).exists()
    assert rows[new.id]["removed_at"] is None
    assert Path(rows[new.id]["backup_location"]).is_dir()
    assert rows[outside.id]["removed_at"] is None
    assert Path("/etc").is_dir()


async def test_jobs_of_a_stopped_worker_are_failed(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    cfg = config(migrated_dsn, source_dsn, shared_tmp / "dumps", schedule=None, timeout="60s")
    async with await psycopg.AsyncConnection.connect(migrated_dsn) as conn:
        job = await record.start_backup(conn, target="app", retention_days=7, location="x")
        await conn.execute(
            "UPDATE backup_status SET claimed_at = now() - interval '2 hours' WHERE id = %s",
            (job.id,),
        )
        await conn.commit()
    await Worker(cfg).tick()
    [row] = await _rows(migrated_dsn, "SELECT * FROM backup_status WHERE id = %s", job.id)
    assert row["backup_status"] == "failed"
    assert row["error_message"] == "the backup worker stopped before the backup finished"


async def test_record_down_loses_nothing_and_is_a_metric(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    from compose.processes import free_port

    cfg = config(migrated_dsn, source_dsn, shared_tmp / "dumps", schedule=None)
    worker = Worker(cfg)
    job = await worker.backup_now(cfg.targets[0])
    # The record goes away while the dump runs: the outcome waits in memory.
    dead = cfg.record.model_copy(
        update={"conninfo": f"host=127.0.0.1 port={free_port()} user=postgres"}
    )
    worker.cfg = cfg.model_copy(update={"record": dead})
    assert await worker.backup(job)
    assert len(worker.pending) == 1
    assert worker.stats.record_errors["write"] >= 1
    with pytest.raises(RecordUnavailable):
        await worker.tick()
    # Back: the next tick writes it.
    worker.cfg = cfg
    await worker.tick()
    assert worker.pending == []
    [row] = await _rows(
        migrated_dsn, "SELECT backup_status, manifest IS NOT NULL AS m FROM backup_status"
    )
    assert row == {"backup_status": "completed", "m": True}

    exporter = BackupExporter(cfg.model_copy(update={"record": dead}))
    exporter.worker.stats.record_errors["write"] = 2
    with pytest.raises(UpstreamError, match="OperationalError"):
        await exporter.refresh()
    text = render(exporter, await exporter.snapshot(), [], 0.0).decode()
    assert "backup_up 0.0" in text
    assert 'backup_record_errors_total{operation="read"} 1.0' in text
    assert 'backup_record_errors_total{operation="write"} 2.0' in text
    assert "backup_last_completed_timestamp_seconds" not in text  # nothing read, nothing made up


async def test_metrics_from_the_record(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    cfg = config(migrated_dsn, source_dsn, shared_tmp / "dumps", schedule=None)
    worker = Worker(cfg)
    for _ in range(2):
        assert await worker.backup(await worker.backup_now(cfg.targets[0]))
    outcome = await worker.drill(await worker.drill_now(cfg.targets[0]))
    assert outcome.passed
    async with await psycopg.AsyncConnection.connect(migrated_dsn) as conn:
        failed = await record.start_backup(conn, target="app", retention_days=7, location="x")
        await record.fail_backup(conn, failed.id, "disk full")
        await conn.commit()
    exporter = BackupExporter(cfg)
    await exporter.loop.refresh_once()
    snap, _ = await exporter.snapshot()
    assert snap is not None
    [b] = snap.backups
    assert b.target == "app"
    assert b.method == "pg_dump"
    assert dict(b.counts) == {"completed": 2, "failed": 1, "in_progress": 0, "removed": 0}
    assert b.success_ratio == pytest.approx(2 / 3)
    assert b.last_size is not None
    assert b.previous_size is not None
    assert b.last_failed is not None
    assert b.last_completed is not None
    assert b.last_failed > b.last_completed
    [d] = snap.drills
    assert d.last_passed is True
    assert d.rto == pytest.approx(outcome.rto_seconds)
    assert dict(snap.source_sizes)["app"] > 0
    text = render(exporter, await exporter.snapshot(), [], 0.0).decode()
    assert "backup_up 1.0" in text
    assert 'backup_drill_last_passed{target="app",type="restore"} 1.0' in text
    assert 'backup_drill_rto_target_seconds{target="app"} 120.0' in text
    assert 'backup_target_configured{target="app"} 1.0' in text
    assert figures.KINDS  # every kind rendered, idle ones as 0
    assert 'backup_jobs_running{kind="retention"} 0.0' in text
