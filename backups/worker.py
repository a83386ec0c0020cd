"""The worker's loop: scheduled backups and drills, requests from the operator API, retention,
and recovery from its own crashes. One job runs at a time (a restore and a dump competing for
the same disks and cores would both be slower, and measure RTO wrong).

Several workers may share a record: a scheduled job is started inside a transaction holding a
per-target advisory lock that re-checks it is still due, and requests are claimed with
FOR UPDATE SKIP LOCKED, so no job runs twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from backups import drill, dump, pgtools, pitr
from backups.config import BackupsConfig, Target
from backups.figures import JobStats
from common.postgres import connect
from schema import backups as record

log = logging.getLogger("backups.worker")
T = TypeVar("T")
APP = "wsinfra-backups"
# A failed scheduled job is tried again after this long (or its schedule, if shorter).
RETRY_AFTER = 600.0
SCHEDULE_CHECK = 30.0
# A running job's row is committed a moment before its worker takes the job's lock.
ORPHAN_GRACE = 60.0
RETENTION_CHECK = 600.0


class RecordUnavailable(Exception):
    pass


class Worker:
    def __init__(self, cfg: BackupsConfig, *, work_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.work_dir = work_dir
        self.stats = JobStats()
        self.lock = asyncio.Lock()
        # Outcomes that could not be written (record down): retried until they are. The dumps
        # they describe are on disk with their manifests, so nothing is lost meanwhile.
        self.pending: list[Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]] = []
        self._next_schedule_check = 0.0
        self._next_retention = 0.0
        self._next_orphan_check = 0.0

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.cfg.targets]

    # --- the record ---------------------------------------------------------------------------

    async def _record(
        self, op: str, fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
    ) -> T:
        try:
            conn = await connect(self.cfg.record, APP)
        except psycopg.Error as exc:
            self.stats.record_errors[op] = self.stats.record_errors.get(op, 0) + 1
            raise RecordUnavailable(type(exc).__name__) from None
        try:
            async with conn.transaction():
                return await fn(conn)
        except psycopg.Error as exc:
            self.stats.record_errors[op] = self.stats.record_errors.get(op, 0) + 1
            raise RecordUnavailable(type(exc).__name__) from None
        finally:
            await conn.close()

    async def _write(self, fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]) -> None:
        """Write now, or keep it for the next tick."""
        try:
            await self._record("write", fn)
        except RecordUnavailable as exc:
            log.warning("record write deferred", extra={"reason": str(exc)})
            self.pending.append(fn)

    async def _flush_pending(self) -> None:
        while self.pending:
            fn = self.pending[0]
            await self._record("write", fn)
            self.pending.pop(0)

    def _job(self, kind: str, ok: bool) -> None:
        key = (kind, "ok" if ok else "failed")
        self.stats.finished[key] = self.stats.finished.get(key, 0) + 1

    @contextlib.contextmanager
    def _running(self, kind: str) -> Any:
        self.stats.running[kind] = self.stats.running.get(kind, 0) + 1
        try:
            yield
        finally:
            self.stats.running[kind] -= 1

    # --- jobs ---------------------------------------------------------------------------------

    async def backup(self, job: record.BackupJob) -> bool:
        """Take the backup `job` names (its row exists, in progress): True when it completed."""
        target = self.cfg.target(job.target)
        assert target is not None
        async with self.lock, self._holding(job.id):
            with self._running("backup"):
                started = time.monotonic()
                try:
                    result = await dump.take_backup(target, self.cfg.location, job.id)
                except dump.BackupError as exc:
                    reason = str(exc)
                    log.warning("backup failed", extra={"target": target.name, "reason": reason})
                    took = time.monotonic() - started
                    await self._write(
                        lambda c: record.fail_backup(c, job.id, reason, duration_seconds=took)
                    )
                    self._job("backup", False)
                    return False
                log.info(
                    "backup completed",
                    extra={
                        "target": target.name,
                        "bytes": result.size_bytes,
                        "seconds": round(result.duration_seconds, 1),
                    },
                )
                await self._write(
                    lambda c: record.finish_backup(
                        c,
                        job.id,
                        location=result.location,
                        size_bytes=result.size_bytes,
                        duration_seconds=result.duration_seconds,
                        manifest=result.manifest,
                    )
                )
                self._job("backup", True)
                return True

    async def backup_now(self, target: Target) -> record.BackupJob:
        return await self._record(
            "write",
            lambda c: record.start_backup(
                c,
                target=target.name,
                retention_days=target.retention_days,
                location=str(self.cfg.location / target.name),
            ),
        )

    async def drill(self, job: record.DrillJob) -> record.DrillOutcome:
        """Run the drill `job` names (its row exists, running)."""
        target = self.cfg.target(job.target)
        assert target is not None
        async with self.lock, self._holding(job.id):
            with self._running("pitr_drill" if job.drill_type == "point_in_time" else "drill"):
                outcome = await self._drill(target, job)
        await self._write(lambda c: record.finish_drill(c, job.id, outcome))
        self._job("pitr_drill" if job.drill_type == "point_in_time" else "drill", outcome.passed)
        log.info(
            "drill finished",
            extra={
                "target": target.name,
                "type": job.drill_type,
                "passed": outcome.passed,
                "rto_seconds": None
                if outcome.rto_seconds is None
                else round(outcome.rto_seconds, 2),
                "reason": outcome.error,
            },
        )
        return outcome

    async def _drill(self, target: Target, job: record.DrillJob) -> record.DrillOutcome:
        if job.drill_type == "point_in_time":
            if target.pitr is None:
                return record.DrillOutcome(
                    False, [], None, None, None, "no pitr section for this target"
                )
            try:
                outcome, _ = await asyncio.wait_for(
                    pitr.run_pitr_drill(target, target.pitr, self.work_dir), target.drill.timeout
                )
            except TimeoutError:
                return record.DrillOutcome(False, [], None, None, None, "the drill timed out")
            return outcome
        restore_target = None
        if job.restore_into not in ("private", "scratch"):
            restore_target = self.cfg.restore_target(job.restore_into)
            if restore_target is None:
                return record.DrillOutcome(
                    False,
                    [],
                    None,
                    None,
                    None,
                    f"no restore target named {job.restore_into} is configured",
                )
        try:
            backup = await self._record(
                "read",
                lambda c: (
                    record.backup_by_id(c, job.backup_id)
                    if job.backup_id is not None
                    else record.newest_completed(c, target.name)
                ),
            )
        except RecordUnavailable as exc:
            return record.DrillOutcome(
                False, [], None, None, None, f"the record is unavailable: {exc}"
            )
        if backup is None or backup.get("removed_at") is not None or not backup.get("manifest"):
            return record.DrillOutcome(
                False, [], None, None, None, "no completed backup to restore"
            )
        if job.backup_id is None:
            await self._write(lambda c: record.set_drill_backup(c, job.id, backup["id"]))
        try:
            return await asyncio.wait_for(
                drill.run_drill(
                    target, backup, restore_target=restore_target, work_dir=self.work_dir
                ),
                target.drill.timeout,
            )
        except TimeoutError:
            return record.DrillOutcome(False, [], None, None, None, "the drill timed out")

    async def drill_now(
        self, target: Target, drill_type: str = "restore", trigger: str = "cli"
    ) -> record.DrillJob:
        where = "private" if target.drill.scratch == "private" else "scratch"
        return await self._record(
            "write",
            lambda c: record.start_drill(
                c, target=target.name, drill_type=drill_type, restore_into=where, trigger=trigger
            ),
        )

    async def base_backup(self, target: Target) -> bool:
        assert target.pitr is not None
        p = target.pitr
        async with self.lock:
            with self._running("pitr_base_backup"):
                job = await self._record(
                    "write",
                    lambda c: record.start_backup(
                        c,
                        target=target.name,
                        retention_days=target.retention_days,
                        location=str(p.base_backup_dir),
                        method="pg_basebackup",
                    ),
                )
                started = time.monotonic()
                try:
                    async with self._holding(job.id):
                        base = await pitr.take_base_backup(target, p)
                except pgtools.ToolError as exc:
                    reason = str(exc)
                    await self._write(lambda c: record.fail_backup(c, job.id, reason))
                    self._job("pitr_base_backup", False)
                    return False
                await self._write(
                    lambda c: record.finish_backup(
                        c,
                        job.id,
                        location=str(base.path),
                        size_bytes=base.size_bytes,
                        duration_seconds=time.monotonic() - started,
                        manifest={
                            "base_backup": str(base.path),
                            "started_at": base.started_at.isoformat(),
                        },
                    )
                )
                for gone in await pitr.prune_base_backups(p):
                    await self._write(
                        functools.partial(record.mark_removed_at_location, location=str(gone.path))
                    )
                self._job("pitr_base_backup", True)
                return True

    async def retention(self) -> int:
        """Delete expired dumps (only directories under the configured location) and mark
        their rows removed; how many."""
        rows = await self._record("read", lambda c: record.expired_backups(c, self.names))
        root = await asyncio.to_thread(self.cfg.location.resolve)
        removed = 0
        with self._running("retention"):
            for row in rows:
                path = await asyncio.to_thread(Path(str(row["backup_location"])).resolve)
                if not path.is_relative_to(root) or path == root:
                    log.warning(
                        "retention skipped a backup outside the location",
                        extra={"target": row["backup_target"]},
                    )
                    continue
                await asyncio.to_thread(shutil.rmtree, path, True)
                await self._write(functools.partial(record.mark_removed, backup_id=row["id"]))
                removed += 1
        self._job("retention", True)
        return removed

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except RecordUnavailable as exc:
                log.warning("record unavailable", extra={"reason": str(exc)})
            except Exception:  # a bug in one tick must not stop the schedule
                log.exception("worker tick failed")
            await asyncio.sleep(self.cfg.poll_interval)

    async def tick(self) -> None:
        await self._flush_pending()
        if time.monotonic() >= self._next_orphan_check:
            # Jobs a stopped worker (this one before a restart, or another) left running.
            await self.fail_orphans()
            self._next_orphan_check = time.monotonic() + RETENTION_CHECK
        job = await self._record("write", functools.partial(_claim, names=self.names))
        if isinstance(job, record.BackupJob):
            await self.backup(job)
            return
        if job is not None:
            await self.drill(job)
            return
        now = time.monotonic()
        if now >= self._next_schedule_check:
            self._next_schedule_check = now + SCHEDULE_CHECK
            await self.scheduled()
        if now >= self._next_retention:
            self._next_retention = now + RETENTION_CHECK
            await self.retention()

    async def fail_orphans(self) -> None:
        names, timeout = self.names, self._longest() + ORPHAN_GRACE

        async def fail(conn: psycopg.AsyncConnection[Any]) -> None:
            for orphans in (record.fail_abandoned_backups, record.fail_abandoned_drills):
                await orphans(conn, names, grace_seconds=ORPHAN_GRACE, timeout_seconds=timeout)

        await self._record("write", fail)

    @contextlib.asynccontextmanager
    async def _holding(self, job_id: Any) -> AsyncIterator[None]:
        """Hold the job's advisory lock while it runs, on a connection of its own: a job whose
        lock is free has no worker (fail_orphans). Without the record the job still runs."""
        try:
            conn = await connect(self.cfg.record, APP)
        except psycopg.Error:
            yield
            return
        try:
            await conn.set_autocommit(True)
            await conn.execute(
                "SELECT pg_advisory_lock(hashtextextended(%s, 0))", (record.job_lock_key(job_id),)
            )
            yield
        finally:
            await conn.close()

    def _longest(self) -> float:
        return max(
            [t.timeout for t in self.cfg.targets]
            + [t.drill.timeout for t in self.cfg.targets]
            + [60.0]
        )

    async def scheduled(self) -> None:
        """Start at most one due job per target per check, backups before drills; after a job,
        check again at the next tick (a drill follows its first backup at once)."""
        before = sum(self.stats.finished.values())
        await self._scheduled()
        if sum(self.stats.finished.values()) != before:
            self._next_schedule_check = 0.0

    async def _scheduled(self) -> None:
        for t in self.cfg.targets:
            if t.schedule is not None:
                job = await self._record(
                    "write", functools.partial(_due_backup, t=t, schedule=t.schedule)
                )
                if job is not None:
                    await self.backup(job)
                    continue
            if t.pitr is not None and t.pitr.base_backup_schedule is not None:
                held = pitr.base_backups(t.pitr)
                newest = held[-1].started_at.timestamp() if held else 0.0
                if time.time() - newest >= t.pitr.base_backup_schedule:
                    with contextlib.suppress(RecordUnavailable):
                        await self.base_backup(t)
                    continue
            if t.drill.schedule is not None:
                where = "private" if t.drill.scratch == "private" else "scratch"
                djob = await self._record(
                    "write",
                    functools.partial(
                        _due_drill,
                        t=t,
                        drill_type="restore",
                        where=where,
                        schedule=t.drill.schedule,
                    ),
                )
                if djob is not None:
                    await self.drill(djob)
                    continue
            if (
                t.pitr is not None
                and t.pitr.drill_schedule is not None
                and pitr.base_backups(t.pitr)
            ):
                djob = await self._record(
                    "write",
                    functools.partial(
                        _due_drill,
                        t=t,
                        drill_type="point_in_time",
                        where="private",
                        schedule=t.pitr.drill_schedule,
                    ),
                )
                if djob is not None:
                    await self.drill(djob)


async def _claim(
    conn: psycopg.AsyncConnection[Any], names: list[str]
) -> record.BackupJob | record.DrillJob | None:
    """The next request from the API, backups before drills: one connection per tick."""
    backup = await record.claim_backup_request(conn, names)
    return backup if backup is not None else await record.claim_drill_request(conn, names)


async def _lock_target(conn: psycopg.AsyncConnection[Any], what: str, target: str) -> bool:
    cur = await conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtext(%s))", (f"wsinfra-{what}:{target}",)
    )
    row = await cur.fetchone()
    return bool(row and row[0])


def _due(ages: tuple[Any, ...] | None, schedule: float) -> bool:
    """(seconds since the last attempt, since the last one that did not fail): due when no good
    one is within the schedule, and the last attempt, if it failed, is past the retry pause."""
    any_age, ok_age = ages or (None, None)
    if ok_age is not None and float(ok_age) < schedule:
        return False
    return any_age is None or float(any_age) >= min(schedule, RETRY_AFTER)


async def _due_backup(
    conn: psycopg.AsyncConnection[Any], t: Target, schedule: float
) -> record.BackupJob | None:
    if not await _lock_target(conn, "backup", t.name):
        return None
    cur = await conn.execute(
        """
        SELECT extract(epoch FROM now() - max(started_at)),
               extract(epoch FROM now() - max(started_at) FILTER (WHERE backup_status <> 'failed'))
        FROM backup_status WHERE backup_target = %s AND backup_method = %s
        """,
        (t.name, record.PG_DUMP),
    )
    if not _due(await cur.fetchone(), schedule):
        return None
    return await record.start_backup(
        conn, target=t.name, retention_days=t.retention_days, location=str(Path("pending"))
    )


async def _due_drill(
    conn: psycopg.AsyncConnection[Any], t: Target, drill_type: str, where: str, schedule: float
) -> record.DrillJob | None:
    if not await _lock_target(conn, f"drill-{drill_type}", t.name):
        return None
    if drill_type == "restore":
        cur = await conn.execute(
            """SELECT 1 FROM backup_status WHERE backup_target = %s AND backup_method = %s
               AND backup_status = 'completed' AND removed_at IS NULL LIMIT 1""",
            (t.name, record.PG_DUMP),
        )
        if await cur.fetchone() is None:
            return None  # nothing to restore yet
    cur = await conn.execute(
        """
        SELECT extract(epoch FROM now() - max(requested_at)),
               extract(epoch FROM now() - max(requested_at) FILTER (WHERE status <> 'failed'))
        FROM restore_drills WHERE backup_target = %s AND drill_type = %s
          AND restore_into IN ('private', 'scratch')
        """,
        (t.name, drill_type),
    )
    if not _due(await cur.fetchone(), schedule):
        return None
    return await record.start_drill(
        conn, target=t.name, drill_type=drill_type, restore_into=where, trigger="schedule"
    )
