"""The mirror (`record:`): every backup the Management API lists becomes one row of the spec's
backup_status in wsinfra's own database (`source_key = supabase:<ref>:<id>`, written by
schema.backups.upsert_supabase_backups), updated in place as its status moves.

The refresh loop only hands each refreshed project's listing over (`offer`, no I/O); a task of
its own (`run`) writes it, one transaction per project over one short connection from
common.postgres (password file read per connection, connect and statement timeouts), the whole
write bounded in time. So a database that is down or slow never holds up a refresh or a scrape:
it is `supabase_backup_record_up` 0 and a reason in `supabase_backup_record_errors_total`, and
what was not written stays pending under newer listings until the next refresh wakes the
writer again. Nothing is lost by that: each refresh offers a project's whole listing again and
the write is idempotent (a backup already recorded with the same status writes nothing).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.postgres import connect
from exporters.supabase.config import ManagedProject, Record
from schema.backups import (
    SupabaseBackup,
    mark_unlisted_supabase_backups,
    upsert_supabase_backups,
)

log = logging.getLogger("exporters.supabase.backup_record")
APPLICATION_NAME = "wsinfra-supabase-exporter"

# Why a write failed (the `reason` label): the database cannot be reached, the migrations were
# not applied, the connection is refused its role, database or password (or the password file
# cannot be read) or the role may not write, a timeout, anything else.
REASONS = ("unavailable", "schema", "denied", "timeout", "other")
# A connection the server refuses carries no SQLSTATE in psycopg (only libpq's message, in
# English unless the server's lc_messages says otherwise): these say it is the config's fault.
_REFUSED = (
    "authentication failed",
    "no password supplied",
    "does not exist",
    "pg_hba.conf",
    "permission denied",
)
# Entries kept per project (exporters.supabase.management.parse_backups): the API lists only
# the retained backups (a month of dailies at most), so this bound is never reached in practice.
MAX_ENTRIES = 200
# Listed backups the mirror cannot write (the `reason` label of supabase_backup_record_skipped).
SKIPPED = ("invalid", "over_limit")
_SCHEMA = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedObject,
    # ON CONFLICT (source_key) without the unique index of migration 0013.
    psycopg.errors.InvalidColumnReference,
)


@dataclass(frozen=True, slots=True)
class BackupEntry:
    """One listed backup, as the mirror writes it."""

    id: int
    status: str  # the API's, at most 40 characters
    inserted_at: datetime  # aware (UTC when the API gives no offset)
    physical: bool


@dataclass(frozen=True, slots=True)
class RecordView:
    """The mirror as of one scrape."""

    up: bool | None  # the last write succeeded; None until one was tried
    last_success: float | None
    errors: tuple[tuple[str, int], ...]  # every reason
    changes: tuple[tuple[str, int], ...]  # ("inserted" | "updated", rows)


class BackupRecord:
    def __init__(
        self,
        cfg: Record,
        projects: Iterable[ManagedProject] = (),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.projects = {p.ref: p for p in projects}
        self.clock = clock
        # ref → its newest listing not yet written (at most one per project).
        self.pending: dict[str, tuple[BackupEntry, ...]] = {}
        self.up: bool | None = None
        self.last_success: float | None = None
        self.errors: collections.Counter[str] = collections.Counter()
        self.changes: collections.Counter[str] = collections.Counter()
        self.complete: dict[str, bool] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def retention_days(self, ref: str) -> int:
        return self.cfg.retention_days(self.projects.get(ref))

    def offer(self, ref: str, entries: Sequence[BackupEntry], *, complete: bool = True) -> None:
        """A project's listing as just refreshed: replaces any older one still pending and
        wakes the writer (no I/O: called by the refresh). `complete`: these are all the
        backups the API listed (none left out past MAX_ENTRIES)."""
        self.pending[ref] = tuple(entries)
        self.complete[ref] = complete
        self._wake.set()

    async def run(self) -> None:
        """The background task: write whatever is pending each time a refresh offers some."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Write every pending listing; True when all were written (or none was pending).
        Never raises: a failure is counted and what was not written stays pending (under any
        newer listing offered meanwhile) for the next refresh's wake-up."""
        async with self._lock:
            batch, self.pending = self.pending, {}
            if not batch:
                return True
            done: set[str] = set()
            reason = None
            try:
                # Bounded: connect_timeout and statement_timeout (common.postgres) per step,
                # and this for the whole write (a server that stops answering mid-way).
                async with asyncio.timeout(self.cfg.acquire_timeout + self.cfg.statement_timeout):
                    await self._write(batch, done)
            except TimeoutError:
                reason, detail = "timeout", "the write took longer than its bound"
            except psycopg.errors.QueryCanceled:
                reason, detail = "timeout", "statement_timeout"
            except _SCHEMA as exc:
                reason = "schema"
                detail = f"{type(exc).__name__}: run the migrations (python -m recorder migrate)"
            except psycopg.errors.InsufficientPrivilege as exc:
                reason, detail = "denied", type(exc).__name__
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                refused = any(m in str(exc) for m in _REFUSED)
                reason = "denied" if refused else "unavailable"
                # The class only: libpq's message names the host and the user.
                detail = type(exc).__name__ + (" (role, database or password refused)" * refused)
            except OSError as exc:  # the password file, read at each connection
                reason = "denied"
                detail = f"password file: {exc.strerror or type(exc).__name__}"
            except psycopg.Error as exc:
                reason, detail = "other", type(exc).__name__
            except Exception as exc:  # a bug here must not end the task (nor the exporter)
                log.exception("backup record write crashed")
                reason, detail = "other", type(exc).__name__
            if reason is None:
                self.up, self.last_success = True, self.clock()
                return True
            for ref, entries in batch.items():
                if ref not in done:
                    self.pending.setdefault(ref, entries)
            self.up = False
            self.errors[reason] += 1
            log.warning(
                "backup record write failed",
                extra={"reason": reason, "detail": detail, "pending": sorted(self.pending)},
            )
            return False

    async def _write(self, batch: dict[str, tuple[BackupEntry, ...]], done: set[str]) -> None:
        conn = await connect(self.cfg, APPLICATION_NAME)
        try:
            for ref in sorted(batch):
                retention = self.retention_days(ref)
                rows = [
                    SupabaseBackup(ref, e.id, e.status, e.inserted_at, e.physical, retention)
                    for e in batch[ref]
                ]
                # One transaction per project: its listing is recorded whole or not at all.
                async with conn.transaction():
                    inserted, updated = await upsert_supabase_backups(conn, rows)
                    removed = await mark_unlisted_supabase_backups(
                        conn,
                        ref,
                        [e.id for e in batch[ref]],
                        complete=self.complete.get(ref, False),
                    )
                done.add(ref)
                self.changes["inserted"] += inserted
                self.changes["updated"] += updated
                self.changes["removed"] += removed
        finally:
            await conn.close()

    def view(self) -> RecordView:
        return RecordView(
            self.up,
            self.last_success,
            tuple((r, self.errors[r]) for r in REASONS),
            tuple((c, self.changes[c]) for c in ("inserted", "updated", "removed")),
        )


def collect(record: RecordView, skipped: Iterable[tuple[str, int, int]]) -> list[Metric]:
    """The mirror's families; `skipped` is (project, invalid, over_limit) of each project
    served."""
    out: list[Metric] = []
    if record.up is not None:
        out.append(
            GaugeMetricFamily(
                "supabase_backup_record_up",
                "1 if the last write of the backups to backup_status succeeded, 0 if it failed.",
                value=1.0 if record.up else 0.0,
            )
        )
    if record.last_success is not None:
        out.append(
            GaugeMetricFamily(
                "supabase_backup_record_last_success_timestamp_seconds",
                "When the backups were last written to backup_status.",
                value=record.last_success,
            )
        )
    errors = CounterMetricFamily(
        "supabase_backup_record_errors",
        "Failed writes of the backups to backup_status, by reason (retried on the next refresh).",
        labels=["reason"],
    )
    for reason, n in record.errors:
        errors.add_metric([reason], n)
    changes = CounterMetricFamily(
        "supabase_backup_record_changes",
        "Rows of backup_status the mirror inserted, updated as a backup's status moved, or marked"
        " removed when the API stopped listing the backup.",
        labels=["change"],
    )
    for change, n in record.changes:
        changes.add_metric([change], n)
    left = GaugeMetricFamily(
        "supabase_backup_record_skipped",
        "Backups listed by the API (cached) that are not mirrored: no integer id or time"
        f" (invalid), or past the newest {MAX_ENTRIES} (over_limit).",
        labels=["project", "reason"],
    )
    for project, invalid, over_limit in skipped:
        left.add_metric([project, "invalid"], invalid)
        left.add_metric([project, "over_limit"], over_limit)
    return [*out, errors, changes, left]
