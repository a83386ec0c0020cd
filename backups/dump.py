"""Taking a logical backup: pg_dump's directory format with parallel jobs, compressed, read from
one exported snapshot that the inventory (row counts, samples, schema objects) is taken in too;
then a manifest with every file's SHA-256, written beside the dump.

The dump is written under `<dir>.partial` and renamed when complete, so a directory without that
suffix is always a finished backup.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from backups import inventory, pgtools
from backups.config import Target
from common.postgres import connect

MANIFEST = "manifest.json"
DUMP_DIR = "dump"
FORMAT_VERSION = 1


class BackupError(Exception):
    """The backup failed; the message is safe to record (no secret, no traceback)."""


@dataclass(frozen=True, slots=True)
class DumpResult:
    location: str
    size_bytes: int
    duration_seconds: float
    manifest: dict[str, Any]


def backup_dir(location: Path, target: str, backup_id: uuid.UUID, now: datetime) -> Path:
    return location / target / f"{now.strftime('%Y%m%dT%H%M%SZ')}_{str(backup_id)[:8]}"


def file_checksums(root: Path) -> dict[str, dict[str, Any]]:
    """{path relative to root: {"sha256", "bytes"}} for every file under root."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out[str(path.relative_to(root))] = {"sha256": h.hexdigest(), "bytes": path.stat().st_size}
    return out


async def take_backup(target: Target, location: Path, backup_id: uuid.UUID) -> DumpResult:
    """Dump `target` into a new directory under `location`; BackupError on any failure (the
    partial directory is removed)."""
    started = time.monotonic()
    now = datetime.now(UTC)
    final = backup_dir(location, target.name, backup_id, now)
    partial = final.with_name(final.name + ".partial")
    try:
        partial.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise BackupError(f"cannot create {partial}: {exc.strerror or exc}") from None
    try:
        manifest = await _dump(target, partial / DUMP_DIR)
        files = await asyncio.to_thread(file_checksums, partial / DUMP_DIR)
        manifest.update(
            {
                "format_version": FORMAT_VERSION,
                "backup_id": str(backup_id),
                "target": target.name,
                "started_at": now.isoformat(),
                "duration_seconds": round(time.monotonic() - started, 3),
                "files": files,
                "dump_bytes": sum(f["bytes"] for f in files.values()),
                "jobs": target.jobs,
                "compress": target.compress,
            }
        )
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        partial.rename(final)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, partial, True)
        raise
    return DumpResult(
        location=str(final),
        size_bytes=int(manifest["dump_bytes"]),
        duration_seconds=time.monotonic() - started,
        manifest=manifest,
    )


async def _dump(target: Target, out: Path) -> dict[str, Any]:
    try:
        conn = await connect(
            target.source.model_copy(update={"statement_timeout": target.timeout}),
            "wsinfra-backups",
        )
    except psycopg.Error as exc:
        raise BackupError(f"cannot connect to {target.name}: {pgtools.pg_reason(exc)}") from None
    try:
        # One snapshot for everything: the inventory is what pg_dump --snapshot reads.
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        await inventory.prepare_session(conn)
        cur = await conn.execute("SELECT pg_export_snapshot(), now()")
        row = await cur.fetchone()
        assert row is not None
        snapshot, snapshot_at = row
        manifest = await inventory.take(conn, target.drill.sample_rows)
        manifest["snapshot_at"] = snapshot_at.isoformat()
        async with pgtools.libpq_env(target.source) as env:
            await pgtools.run(
                [
                    pgtools.binary("pg_dump"),
                    "--format=directory",
                    f"--jobs={target.jobs}",
                    f"--compress={target.compress}",
                    f"--snapshot={snapshot}",
                    f"--file={out}",
                    "--no-password",
                    f"--dbname={target.source.conninfo}",
                ],
                env=env,
                timeout=target.timeout,
            )
        await conn.execute("COMMIT")
        return manifest
    except psycopg.Error as exc:
        raise BackupError(f"reading {target.name} failed: {pgtools.pg_reason(exc)}") from None
    except pgtools.ToolError as exc:
        raise BackupError(str(exc)) from None
    finally:
        await conn.close()
