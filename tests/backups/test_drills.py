"""Backups and restore drills against the real PostgreSQL: one that passes, and each way one
must fail (rows lost in the dump, a corrupted file, an unreachable scratch server)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from backups import drill, dump
from backups.config import BackupsConfig
from backups.worker import Worker
from tests.backups.conftest import config

pytestmark = pytest.mark.integration


async def _row(dsn: str, table: str, id_: Any) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(dsn, row_factory=dict_row) as conn:
        cur = await conn.execute(f"SELECT * FROM {table} WHERE id = %s", (id_,))  # noqa: S608
        row = await cur.fetchone()
    assert row is not None
    return row


async def _backup(cfg: BackupsConfig) -> dict[str, Any]:
    worker = Worker(cfg)
    target = cfg.targets[0]
    job = await worker.backup_now(target)
    assert await worker.backup(job)
    return await _row(str(cfg.record.conninfo), "backup_status", job.id)


async def test_backup_then_drill_passes(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    cfg = config(migrated_dsn, source_dsn, shared_tmp / "dumps")
    row = await _backup(cfg)
    assert row["backup_status"] == "completed"
    assert row["backup_method"] == "pg_dump"
    assert row["backup_size_bytes"] > 0
    assert row["expires_at"] is not None
    manifest = row["manifest"]
    assert manifest["row_counts"] == {
        "public.customers": 2000,
        "public.orders": 10000,
        "public.events": 500,
    }
    assert "policy public.orders.readers" in manifest["schema_objects"]
    assert "trigger public.orders.orders_touch" in manifest["schema_objects"]
    assert len(manifest["samples"]["public.orders"]["rows"]) == 20
    on_disk = json.loads((Path(row["backup_location"]) / dump.MANIFEST).read_text())
    assert on_disk["files"] == manifest["files"]

    worker = Worker(cfg)
    job = await worker.drill_now(cfg.targets[0])
    outcome = await worker.drill(job)
    assert outcome.passed, outcome
    checks = {c["check"]: c for c in outcome.checks}
    assert {"checksums", "restore", "schema", "row_counts", "samples", "smoke_query_1"} <= set(
        checks
    )
    assert checks["samples"]["detail"]["rows"] == 40  # customers and orders; events has no key
    drill_row = await _row(migrated_dsn, "restore_drills", job.id)
    assert drill_row["status"] == "passed"
    assert drill_row["backup_id"] == row["id"]
    assert drill_row["rto_seconds"] > 0
    assert drill_row["verified_at"] is not None
    assert drill_row["rpo_seconds"] >= 0
    assert drill_row["restored_bytes"] > 0


async def test_rows_deleted_after_the_dump_do_not_matter(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    """Counts are the dump's snapshot's: the source changing afterwards is not a failure."""
    cfg = config(migrated_dsn, source_dsn, shared_tmp / "dumps")
    row = await _backup(cfg)
    async with await psycopg.AsyncConnection.connect(source_dsn, autocommit=True) as conn:
        await conn.execute("DELETE FROM orders WHERE n > 2")
    outcome = await drill.run_drill(cfg.targets[0], row)
    assert outcome.passed, outcome


def _data_file(dump_dir: Path, table: str) -> Path:
    """The directory format's data file of `table` (from its table of contents)."""
    import subprocess

    from backups import pgtools

    toc = subprocess.run(
        [pgtools.binary("pg_restore"), "--list", str(dump_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in toc.splitlines():
        if f" TABLE DATA public {table} " in line:
            dump_id = line.split(";")[0].strip()
            return dump_dir / f"{dump_id}.dat.gz"
    raise AssertionError(f"no data for {table} in the dump")


async def test_drill_fails_when_the_dump_lost_rows(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    """A dump whose table data is short (checksums made to match, as a faulty dumper would):
    the counts recorded at the snapshot catch it."""
    cfg = config(migrated_dsn, source_dsn, shared_tmp / "dumps")
    row = await _backup(cfg)
    root = Path(row["backup_location"])
    data = _data_file(root / dump.DUMP_DIR, "orders")
    lines = gzip.decompress(data.read_bytes()).decode().splitlines(keepends=True)
    data.write_bytes(gzip.compress("".join(lines[:5000]).encode()))
    manifest = row["manifest"]
    manifest["files"] = dump.file_checksums(root / dump.DUMP_DIR)
    outcome = await drill.run_drill(cfg.targets[0], {**row, "manifest": manifest})
    assert not outcome.passed
    checks = {c["check"]: c for c in outcome.checks}
    assert checks["checksums"]["ok"], checks
    assert checks["schema"]["ok"], checks
    assert checks["restore"]["ok"], checks["restore"]
    assert not checks["row_counts"]["ok"]
    assert checks["row_counts"]["detail"]["tables"] == {
        "public.orders": {"expected": 10000, "restored": 5000}
    }
    assert outcome.rto_seconds is None
    assert "row_counts" in (outcome.error or "")


async def test_drill_fails_on_a_corrupted_dump(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    cfg = config(migrated_dsn, source_dsn, shared_tmp / "dumps")
    row = await _backup(cfg)
    data = _data_file(Path(row["backup_location"]) / dump.DUMP_DIR, "customers")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    worker = Worker(cfg)
    job = await worker.drill_now(cfg.targets[0])
    outcome = await worker.drill(job)
    assert not outcome.passed
    assert outcome.checks[0]["check"] == "checksums"
    assert not outcome.checks[0]["ok"]
    assert outcome.checks[0]["detail"]["files"] == [data.name]
    assert len(outcome.checks) == 1  # nothing restored from a corrupted dump
    drill_row = await _row(migrated_dsn, "restore_drills", job.id)
    assert drill_row["status"] == "failed"
    assert drill_row["error_message"] == "the backup's files do not match its manifest"


async def test_drill_fails_when_the_scratch_server_is_unreachable(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    from compose.processes import free_port

    port = free_port()
    cfg = config(
        migrated_dsn,
        source_dsn,
        shared_tmp / "dumps",
        drill={
            "scratch": {"conninfo": f"host=127.0.0.1 port={port} user=postgres dbname=postgres"}
        },
    )
    await _backup(cfg)
    worker = Worker(cfg)
    job = await worker.drill_now(cfg.targets[0])
    assert job.restore_into == "scratch"
    outcome = await worker.drill(job)
    assert not outcome.passed
    assert outcome.error is not None
    assert outcome.error.startswith("cannot connect to the scratch server")
    drill_row = await _row(migrated_dsn, "restore_drills", job.id)
    assert drill_row["status"] == "failed"
    assert drill_row["rto_seconds"] is None


async def test_drill_on_a_scratch_server_drops_its_database(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    from tests.conftest import PG_ADMIN

    cfg = config(
        migrated_dsn, source_dsn, shared_tmp / "dumps", drill={"scratch": {"conninfo": PG_ADMIN}}
    )
    await _backup(cfg)
    worker = Worker(cfg)
    outcome = await worker.drill(await worker.drill_now(cfg.targets[0]))
    assert outcome.passed, outcome
    created = next(c for c in outcome.checks if c["check"] == "restored_into")["detail"]["database"]
    async with await psycopg.AsyncConnection.connect(PG_ADMIN) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (created,))
        assert await cur.fetchone() is None


async def test_an_older_manifest_is_verified_with_its_own_digests(
    migrated_dsn: str, source_dsn: str, shared_tmp: Path
) -> None:
    """A manifest written before the digests were normalized (no schema_digest): the restored
    copy is digested the old way, so only what really prints differently after a restore (the
    varchar IN-list) differs, not every object."""
    from backups import inventory

    cfg = config(migrated_dsn, source_dsn, shared_tmp / "dumps")
    row = await _backup(cfg)
    async with await psycopg.AsyncConnection.connect(source_dsn) as conn:
        old_digests = await inventory.schema_objects(conn, 1)
    manifest = {k: v for k, v in row["manifest"].items() if k != "schema_digest"}
    manifest["schema_objects"] = old_digests
    outcome = await drill.run_drill(cfg.targets[0], {**row, "manifest": manifest})
    schema = next(c for c in outcome.checks if c["check"] == "schema")
    assert schema["detail"]["changed"] == ["constraint public.customers.customers_tier_check"]
    assert schema["detail"]["differ"] == 1
