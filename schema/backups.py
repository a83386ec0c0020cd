"""The typed writes (and the worker's claims) for backup_status and restore_drills (0013).

Three writers share these tables: the Supabase exporter mirrors the Management API's backups,
the backup worker (backups/) records its dumps and drills, and the operator API records requests
that the worker then claims. Each function runs in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

BACKUP_STATUSES = ("in_progress", "completed", "failed")
# The method of the dumps the worker takes (and of the requests it claims).
PG_DUMP = "pg_dump"


# --- the Supabase mirror ---------------------------------------------------------------------

# The Management API's status → (backup_status, error_message, removed). REMOVED is a backup
# that existed and is gone (history, not a failure); ARCHIVED is still held by Supabase.
SUPABASE_STATUS: dict[str, tuple[str, str | None, bool]] = {
    "COMPLETED": ("completed", None, False),
    "ARCHIVED": ("completed", None, False),
    "REMOVED": ("completed", None, True),
    "PENDING": ("in_progress", None, False),
    "FAILED": ("failed", "Supabase reports the backup FAILED", False),
    "CANCELLED": ("failed", "Supabase reports the backup CANCELLED", False),
}


@dataclass(frozen=True, slots=True)
class SupabaseBackup:
    """One entry of GET /v1/projects/{ref}/database/backups."""

    ref: str
    backup_id: int
    status: str  # the API's, one of SUPABASE_STATUS
    inserted_at: datetime
    physical: bool
    retention_days: int

    @property
    def source_key(self) -> str:
        return f"supabase:{self.ref}:{self.backup_id}"


_UPSERT_SUPABASE = """
INSERT INTO backup_status (
    backup_type, backup_target, backup_method, backup_location, backup_retention_days,
    backup_status, error_message, started_at, completed_at, claimed_at, source_key, removed_at
) VALUES (
    'database', %(target)s, %(method)s, %(location)s, %(retention)s,
    %(status)s, %(error)s, %(started)s, %(completed)s, %(started)s, %(key)s,
    CASE WHEN %(removed)s THEN now() END
)
ON CONFLICT (source_key) WHERE source_key IS NOT NULL DO UPDATE SET
    backup_status = EXCLUDED.backup_status,
    error_message = EXCLUDED.error_message,
    completed_at = EXCLUDED.completed_at,
    backup_retention_days = EXCLUDED.backup_retention_days,
    removed_at = CASE WHEN %(removed)s THEN COALESCE(backup_status.removed_at, now()) END
WHERE (backup_status.backup_status, backup_status.error_message, backup_status.completed_at,
       backup_status.backup_retention_days, backup_status.removed_at IS NOT NULL)
   IS DISTINCT FROM (EXCLUDED.backup_status, EXCLUDED.error_message, EXCLUDED.completed_at,
       EXCLUDED.backup_retention_days, %(removed)s::boolean)
RETURNING (xmax = 0) AS inserted
"""


def supabase_target(ref: str) -> str:
    return f"supabase:{ref}"


async def upsert_supabase_backups(
    conn: psycopg.AsyncConnection[Any], backups: Iterable[SupabaseBackup]
) -> tuple[int, int]:
    """Mirror the listed backups: one row each, updated in place when the status, completion or
    retention moved. Returns (inserted, updated); an unchanged backup writes nothing."""
    inserted = updated = 0
    async with conn.cursor() as cur:
        for b in backups:
            status, error, removed = SUPABASE_STATUS.get(
                b.status, ("failed", f"Supabase reports the backup {b.status[:40]}", False)
            )
            await cur.execute(
                _UPSERT_SUPABASE,
                {
                    "target": supabase_target(b.ref),
                    "method": "supabase_physical" if b.physical else "supabase_logical",
                    "location": supabase_target(b.ref),
                    "retention": b.retention_days,
                    "status": status,
                    "error": error,
                    "started": b.inserted_at,
                    # The API gives one time per backup: a finished one finished then.
                    "completed": b.inserted_at if status == "completed" else None,
                    "key": b.source_key,
                    "removed": removed,
                },
            )
            row = await cur.fetchone()
            if row is not None:
                if row[0]:
                    inserted += 1
                else:
                    updated += 1
    return inserted, updated


async def mark_unlisted_supabase_backups(
    conn: psycopg.AsyncConnection[Any],
    ref: str,
    listed: Sequence[int],
    *,
    complete: bool,
) -> int:
    """A mirrored backup the API no longer lists is gone (Supabase drops backups past the plan's
    retention without a REMOVED status): its row gets removed_at. `complete`: the listing is
    the API's whole list; otherwise (the mirror wrote only the newest ones) only rows newer than
    the oldest listed backup can be known gone. Returns how many rows were marked."""
    cur = await conn.execute(
        """
        UPDATE backup_status SET removed_at = now()
        WHERE backup_target = %(target)s AND source_key IS NOT NULL AND removed_at IS NULL
          AND source_key <> ALL(%(keys)s)
          AND (%(complete)s OR started_at > (
                SELECT min(started_at) FROM backup_status WHERE source_key = ANY(%(keys)s)))
        """,
        {
            "target": supabase_target(ref),
            "keys": [f"supabase:{ref}:{i}" for i in listed],
            "complete": complete,
        },
    )
    return cur.rowcount


# --- the worker's own dumps ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupJob:
    """A backup the worker is to take: scheduled (claimed when created) or requested."""

    id: UUID
    target: str
    retention_days: int
    requested_by: UUID | None
    notes: str | None


async def request_backup(
    conn: psycopg.AsyncConnection[Any],
    *,
    target: str,
    retention_days: int,
    location: str,
    notes: str | None,
    requested_by: UUID | None,
    backup_type: str = "database",
) -> dict[str, Any]:
    """A backup asked for (API): a row in_progress that no worker has claimed yet."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """
            INSERT INTO backup_status (backup_type, backup_target, backup_method, backup_location,
                backup_retention_days, backup_status, backup_notes, requested_by)
            VALUES (%s, %s, %s, %s, %s, 'in_progress', %s, %s)
            RETURNING id, backup_type, backup_target, backup_status, backup_location, started_at
            """,
            (backup_type, target, PG_DUMP, location, retention_days, notes, requested_by),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def start_backup(
    conn: psycopg.AsyncConnection[Any],
    *,
    target: str,
    retention_days: int,
    location: str,
    method: str = PG_DUMP,
) -> BackupJob:
    """A scheduled backup: its row, already claimed by the worker creating it."""
    cur = await conn.execute(
        """
        INSERT INTO backup_status (backup_type, backup_target, backup_method, backup_location,
            backup_retention_days, backup_status, claimed_at)
        VALUES ('database', %s, %s, %s, %s, 'in_progress', now())
        RETURNING id
        """,
        (target, method, location, retention_days),
    )
    row = await cur.fetchone()
    assert row is not None
    return BackupJob(row[0], target, retention_days, None, None)


async def claim_backup_request(
    conn: psycopg.AsyncConnection[Any], targets: Sequence[str]
) -> BackupJob | None:
    """The oldest unclaimed request for one of `targets`, marked claimed (SKIP LOCKED: two
    workers never take the same one)."""
    cur = await conn.execute(
        """
        UPDATE backup_status SET claimed_at = now(), started_at = now()
        WHERE id = (
            SELECT id FROM backup_status
            WHERE backup_status = 'in_progress' AND claimed_at IS NULL
              AND backup_method = %s AND backup_target = ANY(%s)
            ORDER BY started_at LIMIT 1
            FOR UPDATE SKIP LOCKED
        )
        RETURNING id, backup_target, backup_retention_days, requested_by, backup_notes
        """,
        (PG_DUMP, list(targets)),
    )
    row = await cur.fetchone()
    return None if row is None else BackupJob(row[0], row[1], row[2], row[3], row[4])


async def finish_backup(
    conn: psycopg.AsyncConnection[Any],
    backup_id: UUID,
    *,
    location: str,
    size_bytes: int,
    duration_seconds: float,
    manifest: dict[str, Any],
) -> None:
    await conn.execute(
        """
        UPDATE backup_status SET backup_status = 'completed', completed_at = now(),
            backup_location = %s, backup_size_bytes = %s, duration_seconds = %s, manifest = %s
        WHERE id = %s
        """,
        (location, size_bytes, duration_seconds, Jsonb(manifest), backup_id),
    )


async def fail_backup(
    conn: psycopg.AsyncConnection[Any],
    backup_id: UUID,
    error: str,
    *,
    duration_seconds: float | None = None,
) -> None:
    await conn.execute(
        """
        UPDATE backup_status SET backup_status = 'failed', error_message = %s,
            duration_seconds = %s
        WHERE id = %s AND backup_status = 'in_progress'
        """,
        (error[:2000], duration_seconds, backup_id),
    )


# A worker holds a session advisory lock on each job it runs (job_lock_key): a running job
# whose lock is free has no worker, once past the moment between its row's commit and the lock
# (grace), and any job is abandoned past its timeout.


def job_lock_key(job_id: UUID) -> str:
    """SELECT pg_advisory_lock(hashtextextended(%s, 0)) with this: the job is being run."""
    return str(job_id)


async def fail_abandoned_backups(
    conn: psycopg.AsyncConnection[Any],
    targets: Sequence[str],
    *,
    grace_seconds: float,
    timeout_seconds: float,
) -> int:
    """Backups a worker claimed and is no longer running (it stopped mid-dump): failed, so the
    record does not show a backup in progress forever. Returns how many."""
    cur = await conn.execute(
        """
        UPDATE backup_status SET backup_status = 'failed',
            error_message = 'the backup worker stopped before the backup finished'
        WHERE backup_status = 'in_progress' AND claimed_at IS NOT NULL
          AND backup_method IN ('pg_dump', 'pg_basebackup') AND backup_target = ANY(%(targets)s)
          AND ((claimed_at < now() - make_interval(secs => %(grace)s)
                AND pg_try_advisory_xact_lock(hashtextextended(id::text, 0)))
               OR claimed_at < now() - make_interval(secs => %(timeout)s))
        """,
        {"targets": list(targets), "grace": grace_seconds, "timeout": timeout_seconds},
    )
    return cur.rowcount


async def newest_completed(
    conn: psycopg.AsyncConnection[Any], target: str
) -> dict[str, Any] | None:
    """The newest completed, not removed backup of `target` (what a drill restores)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """
            SELECT id, backup_target, backup_location, backup_size_bytes, manifest,
                   started_at, completed_at, expires_at
            FROM backup_status
            WHERE backup_target = %s AND backup_method = %s AND backup_status = 'completed'
              AND removed_at IS NULL
            ORDER BY completed_at DESC LIMIT 1
            """,
            (target, PG_DUMP),
        )
        return await cur.fetchone()


async def backup_by_id(
    conn: psycopg.AsyncConnection[Any], backup_id: UUID
) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """
            SELECT id, backup_target, backup_method, backup_location, backup_size_bytes, manifest,
                   backup_status, started_at, completed_at, expires_at, removed_at
            FROM backup_status WHERE id = %s
            """,
            (backup_id,),
        )
        return await cur.fetchone()


async def expired_backups(
    conn: psycopg.AsyncConnection[Any], targets: Sequence[str]
) -> list[dict[str, Any]]:
    """Completed dumps of `targets` past their expiry whose files are still there."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """
            SELECT id, backup_target, backup_location FROM backup_status
            WHERE backup_method = %s AND backup_target = ANY(%s) AND backup_status = 'completed'
              AND removed_at IS NULL AND expires_at < now()
            ORDER BY expires_at
            """,
            (PG_DUMP, list(targets)),
        )
        return await cur.fetchall()


async def mark_removed(conn: psycopg.AsyncConnection[Any], backup_id: UUID) -> None:
    await conn.execute(
        "UPDATE backup_status SET removed_at = now() WHERE id = %s AND removed_at IS NULL",
        (backup_id,),
    )


async def mark_removed_at_location(conn: psycopg.AsyncConnection[Any], location: str) -> None:
    """A base backup pruned from disk: its row (found by where it was) marked removed."""
    await conn.execute(
        "UPDATE backup_status SET removed_at = now() WHERE backup_location = %s AND removed_at IS NULL",
        (location,),
    )


# --- restore drills --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DrillJob:
    id: UUID
    drill_type: str
    target: str
    backup_id: UUID | None
    restore_into: str
    target_time: datetime | None
    trigger: str


async def request_drill(
    conn: psycopg.AsyncConnection[Any],
    *,
    target: str,
    drill_type: str = "restore",
    backup_id: UUID | None = None,
    restore_into: str = "private",
    target_time: datetime | None = None,
    trigger: str = "api",
    requested_by: UUID | None = None,
) -> UUID:
    """A drill (or a disaster-recovery restore into a named target) for the worker to claim."""
    cur = await conn.execute(
        """
        INSERT INTO restore_drills (backup_id, drill_type, backup_target, restore_into, status,
            trigger, requested_by, target_time)
        VALUES (%s, %s, %s, %s, 'requested', %s, %s, %s)
        RETURNING id
        """,
        (backup_id, drill_type, target, restore_into, trigger, requested_by, target_time),
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def start_drill(
    conn: psycopg.AsyncConnection[Any],
    *,
    target: str,
    drill_type: str,
    restore_into: str,
    trigger: str,
    backup_id: UUID | None = None,
    target_time: datetime | None = None,
) -> DrillJob:
    """A drill the worker runs now (schedule or CLI): its row, already running."""
    cur = await conn.execute(
        """
        INSERT INTO restore_drills (backup_id, drill_type, backup_target, restore_into, status,
            trigger, target_time, started_at)
        VALUES (%s, %s, %s, %s, 'running', %s, %s, now())
        RETURNING id
        """,
        (backup_id, drill_type, target, restore_into, trigger, target_time),
    )
    row = await cur.fetchone()
    assert row is not None
    return DrillJob(row[0], drill_type, target, backup_id, restore_into, target_time, trigger)


async def claim_drill_request(
    conn: psycopg.AsyncConnection[Any], targets: Sequence[str]
) -> DrillJob | None:
    cur = await conn.execute(
        """
        UPDATE restore_drills SET status = 'running', started_at = now()
        WHERE id = (
            SELECT id FROM restore_drills
            WHERE status = 'requested' AND backup_target = ANY(%s)
            ORDER BY requested_at LIMIT 1
            FOR UPDATE SKIP LOCKED
        )
        RETURNING id, drill_type, backup_target, backup_id, restore_into, target_time, trigger
        """,
        (list(targets),),
    )
    row = await cur.fetchone()
    return None if row is None else DrillJob(*row)


async def set_drill_backup(
    conn: psycopg.AsyncConnection[Any], drill_id: UUID, backup_id: UUID | None
) -> None:
    await conn.execute(
        "UPDATE restore_drills SET backup_id = %s WHERE id = %s", (backup_id, drill_id)
    )


@dataclass(frozen=True, slots=True)
class DrillOutcome:
    passed: bool
    checks: list[dict[str, Any]]
    rto_seconds: float | None
    rpo_seconds: float | None
    restored_bytes: int | None
    error: str | None = None


async def finish_drill(
    conn: psycopg.AsyncConnection[Any], drill_id: UUID, outcome: DrillOutcome
) -> None:
    await conn.execute(
        """
        UPDATE restore_drills SET status = %s, finished_at = now(),
            verified_at = CASE WHEN %s THEN now() END,
            rto_seconds = %s, rpo_seconds = %s, restored_bytes = %s, checks = %s,
            error_message = %s
        WHERE id = %s
        """,
        (
            "passed" if outcome.passed else "failed",
            outcome.passed,
            outcome.rto_seconds,
            outcome.rpo_seconds,
            outcome.restored_bytes,
            Jsonb(outcome.checks),
            None if outcome.error is None else outcome.error[:2000],
            drill_id,
        ),
    )


async def fail_abandoned_drills(
    conn: psycopg.AsyncConnection[Any],
    targets: Sequence[str],
    *,
    grace_seconds: float,
    timeout_seconds: float,
) -> int:
    cur = await conn.execute(
        """
        UPDATE restore_drills SET status = 'failed', finished_at = now(),
            error_message = 'the backup worker stopped before the drill finished'
        WHERE status = 'running' AND backup_target = ANY(%(targets)s)
          AND ((started_at < now() - make_interval(secs => %(grace)s)
                AND pg_try_advisory_xact_lock(hashtextextended(id::text, 0)))
               OR started_at < now() - make_interval(secs => %(timeout)s))
        """,
        {"targets": list(targets), "grace": grace_seconds, "timeout": timeout_seconds},
    )
    return cur.rowcount
