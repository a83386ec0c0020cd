"""Point-in-time recovery of a self-hosted PostgreSQL whose WAL is archived: base backups
(pg_basebackup) and a drill that proves a restore stops exactly at the chosen time.

The drill writes a marker row, takes the time just after its commit as the target, writes a
second marker, and forces the WAL holding both into the archive. It then restores the newest
base backup into a private cluster with recovery_target_time = the target and checks that the
first marker is there and the second is not.

The restored server runs with archive_mode off: it must never write its new timeline into the
source's archive.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from backups import pgtools
from backups.config import Pitr, Target
from backups.scratch import FAST_RESTORE, PrivateCluster
from common.postgres import connect
from schema.backups import DrillOutcome

INFO = "wsinfra-base-backup.json"


class PitrError(Exception):
    """The base backup or drill could not go on; the message is safe to record."""


@dataclass(frozen=True, slots=True)
class BaseBackup:
    path: Path
    started_at: datetime
    finished_at: datetime
    size_bytes: int


def _dir_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def base_backups(pitr: Pitr) -> list[BaseBackup]:
    """The finished base backups held, oldest first."""
    out = []
    if not pitr.base_backup_dir.is_dir():
        return []
    for d in pitr.base_backup_dir.iterdir():
        info = d / INFO
        if not info.is_file():
            continue  # unfinished (or not ours)
        try:
            doc = json.loads(info.read_text())
            out.append(
                BaseBackup(
                    d,
                    datetime.fromisoformat(doc["started_at"]),
                    datetime.fromisoformat(doc["finished_at"]),
                    int(doc["size_bytes"]),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda b: b.started_at)


def window(pitr: Pitr) -> tuple[float, float] | None:
    """(earliest, latest) recoverable times as unix seconds: the oldest base backup's start, and
    the newest archived WAL segment's modification time."""
    held = base_backups(pitr)
    if not held:
        return None
    try:
        newest = max(
            (p.stat().st_mtime for p in pitr.archive_dir.iterdir() if p.is_file()), default=None
        )
    except OSError:
        newest = None
    if newest is None:
        return None
    return held[0].started_at.timestamp(), newest


async def take_base_backup(target: Target, pitr: Pitr) -> BaseBackup:
    started = datetime.now(UTC)
    dest = pitr.base_backup_dir / f"{started.strftime('%Y%m%dT%H%M%SZ')}_{uuid.uuid4().hex[:6]}"
    pitr.base_backup_dir.mkdir(parents=True, exist_ok=True)
    try:
        async with pgtools.libpq_env(target.source) as env:
            await pgtools.run(
                [
                    pgtools.binary("pg_basebackup"),
                    f"--pgdata={dest}",
                    "--format=plain",
                    "--wal-method=stream",
                    "--checkpoint=fast",
                    "--no-password",
                    f"--dbname={target.source.conninfo}",
                ],
                env=env,
                timeout=target.timeout,
            )
        finished = datetime.now(UTC)
        size = await asyncio.to_thread(_dir_size, dest)
        info = {
            "started_at": started.isoformat(),
            "finished_at": finished.isoformat(),
            "size_bytes": size,
        }
        (dest / INFO).write_text(json.dumps(info))
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, dest, True)
        raise
    return BaseBackup(dest, started, finished, size)


async def prune_base_backups(pitr: Pitr) -> list[BaseBackup]:
    """Remove all but the newest `keep_base_backups`; the removed ones."""
    held = base_backups(pitr)
    gone = held[: max(0, len(held) - pitr.keep_base_backups)]
    for b in gone:
        await asyncio.to_thread(shutil.rmtree, b.path, True)
    return gone


async def _write_markers(target: Target, pitr: Pitr) -> tuple[str, str, datetime]:
    """(marker before, marker after, target time), the WAL holding both archived."""
    conn = await connect(target.source, "wsinfra-backups")
    table = sql.Identifier(pitr.marker_table)
    before, after = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        await conn.set_autocommit(True)
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY, label text NOT NULL,"
                " written_at timestamptz NOT NULL DEFAULT clock_timestamp())"
            ).format(table)
        )
        await conn.execute(
            sql.SQL("DELETE FROM {} WHERE written_at < now() - interval '7 days'").format(table)
        )
        await conn.execute(
            sql.SQL("INSERT INTO {} (id, label) VALUES (%s, 'before')").format(table), (before,)
        )
        # The target: a moment after the first commit (autocommit: committed on return).
        cur = await conn.execute("SELECT clock_timestamp()")
        row = await cur.fetchone()
        assert row is not None
        target_time: datetime = row[0]
        # The second commit must be strictly later than the target; the clock moves on, but
        # wait for it rather than assume it did.
        while True:
            cur = await conn.execute("SELECT clock_timestamp() > %s", (target_time,))
            later = await cur.fetchone()
            if later is not None and later[0]:
                break
        await conn.execute(
            sql.SQL("INSERT INTO {} (id, label) VALUES (%s, 'after')").format(table), (after,)
        )
        cur = await conn.execute("SELECT pg_walfile_name(pg_switch_wal())")
        row = await cur.fetchone()
        assert row is not None
        segment = str(row[0])
        await _wait_archived(conn, segment, timeout=min(300.0, target.timeout))
    finally:
        await conn.close()
    return before, after, target_time


async def _wait_archived(conn: psycopg.AsyncConnection[Any], segment: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        cur = await conn.execute("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")
        row = await cur.fetchone()
        last = row[0] if row else None
        # Segment names sort in WAL order (timeline, then position).
        if last is not None and str(last)[:24] >= segment:
            return
        if time.monotonic() > deadline:
            failed = row[1] if row else None
            raise PitrError(
                f"WAL segment {segment} was not archived within {timeout:.0f} s"
                + (f" (archiver last failed on {failed})" if failed else "")
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def run_pitr_drill(
    target: Target, pitr: Pitr, work_dir: Path | None = None
) -> tuple[DrillOutcome, datetime | None]:
    """The drill: (its outcome, the target time restored to)."""
    t0 = time.monotonic()
    checks: list[dict[str, Any]] = []
    held = base_backups(pitr)
    if not held:
        return DrillOutcome(False, [], None, None, None, "no base backup held yet"), None
    base = held[-1]
    try:
        before, after, target_time = await _write_markers(target, pitr)
    except (psycopg.Error, PitrError) as exc:
        reason = str(exc) if isinstance(exc, PitrError) else type(exc).__name__
        return DrillOutcome(
            False, [], None, None, None, f"writing the markers failed: {reason}"
        ), None
    drill_started = datetime.now(UTC)
    cluster = PrivateCluster(PrivateCluster.create_base(work_dir, "wsinfra-pitr-"))
    try:
        await asyncio.to_thread(
            shutil.copytree,
            base.path,
            cluster.data,
            ignore=shutil.ignore_patterns("postmaster.pid", INFO),
        )
        (cluster.data / "recovery.signal").touch()
        cluster.data.chmod(0o700)
        cluster.own(cluster.data)
        archive = str(pitr.archive_dir)
        settings = {
            **FAST_RESTORE,
            # A recovered server replays the primary's WAL: keep its level (minimal cannot).
            "wal_level": "replica",
            "hot_standby": "off",
            "restore_command": f"'cp {archive}/%f %p'",
            "recovery_target_time": f"'{target_time.isoformat()}'",
            "recovery_target_action": "promote",
        }
        try:
            await cluster.start(settings)
        except pgtools.ToolError as exc:
            return (
                DrillOutcome(
                    False, checks, None, None, None, f"recovery failed: {exc}; {cluster.log_tail()}"
                ),
                target_time,
            )
        conn = await _connect_when_recovered(cluster)
        try:
            table = sql.Identifier(pitr.marker_table)
            cur = await conn.execute(
                sql.SQL("SELECT id::text FROM {} WHERE id IN (%s, %s)").format(table),
                (before, after),
            )
            found = {r[0] for r in await cur.fetchall()}
        finally:
            await conn.close()
        checks.append({"check": "marker_before_target", "ok": before in found})
        checks.append({"check": "marker_after_target_absent", "ok": after not in found})
        checks.append(
            {
                "check": "base_backup",
                "ok": True,
                "detail": {"started_at": base.started_at.isoformat()},
            }
        )
        rto = time.monotonic() - t0
        passed = all(c["ok"] for c in checks)
        return (
            DrillOutcome(
                passed,
                checks,
                rto if passed else None,
                max(0.0, (drill_started - target_time).total_seconds()),
                base.size_bytes,
                None if passed else "the restore did not stop at the target time",
            ),
            target_time,
        )
    except psycopg.Error as exc:
        return DrillOutcome(
            False,
            checks,
            None,
            None,
            None,
            f"checking the restore failed: {pgtools.pg_reason(exc)}",
        ), target_time
    except PitrError as exc:
        return DrillOutcome(
            False, checks, None, None, None, f"{exc}; {cluster.log_tail()}"
        ), target_time
    finally:
        await cluster.remove()


async def _connect_when_recovered(
    cluster: PrivateCluster, timeout: float = 600.0
) -> psycopg.AsyncConnection[Any]:
    """A connection once recovery reached the target and the server was promoted: with
    hot_standby off it refuses connections until then."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            conn = await connect(cluster.connection("postgres"), "wsinfra-backups")
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PitrError(
                    f"the restored server did not accept connections: {pgtools.pg_reason(exc)}"
                ) from None
        else:
            cur = await conn.execute("SELECT pg_is_in_recovery()")
            row = await cur.fetchone()
            if row is not None and not row[0]:
                return conn
            await conn.close()
            if time.monotonic() > deadline:
                raise PitrError(
                    f"the restored server did not finish recovery within {timeout:.0f} s"
                )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
