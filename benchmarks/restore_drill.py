"""RTO of a restore drill of a generated ~1 GB database: ours against a naive restore, same
machine, same run.

The database: a private cluster holding 16 tables (bigint key, an int, 64 characters of text, a
timestamp, a numeric) with three indexes each, filled to --size-mb of database size. It is
backed up once the way the worker does (pg_dump directory format, 2 jobs, gzip 1, the
inventory taken in the same snapshot); that is the backup both restores start from in a real
recovery, so it is not part of either RTO.

- ours: backups.drill.run_drill, exactly what a scheduled drill runs: the manifest's SHA-256
  checked, a private cluster created (initdb) with the restore settings of backups.scratch,
  pg_restore with 2 jobs (data loaded into tables created in the same run, then indexes and
  constraints built in parallel), then verified (schema, every table's row count, sampled
  rows, a smoke query). RTO: start to verified.
- naive: what a person types without a plan: a fresh cluster (initdb, default settings), then
  `pg_dump source | psql` (plain format, one job), no verification. RTO: start to psql's exit.
  Generous to the naive side: it reads the live source (no backup to fetch or check) and
  verifies nothing.

The two take turns, who goes first alternating; each figure is the median over the rounds.
Run: .venv/bin/python -m benchmarks.restore_drill [--rounds 3] [--size-mb 1024]
Last line: restore_drill_rto_seconds ours=<median> naive=<median> ratio=<median ours/naive>
(target: ours < 120 s and ratio <= 0.5)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from backups import dump, pgtools
from backups.config import Target
from backups.drill import run_drill
from backups.scratch import FAST_RESTORE, PrivateCluster

TABLES = 16
ROW_BYTES = 190  # heap and index bytes per row of the tables below, measured


async def _generate(cluster: PrivateCluster, size_mb: int) -> None:
    rows = size_mb * 1024 * 1024 // ROW_BYTES // TABLES
    conn = await psycopg.AsyncConnection.connect(cluster.connection().conninfo, autocommit=True)
    async with conn:
        for i in range(TABLES):
            await conn.execute(
                f"""
                CREATE TABLE t{i:02d} (id bigint PRIMARY KEY, a int NOT NULL, b text NOT NULL,
                    c timestamptz NOT NULL, d numeric(12, 2));
                INSERT INTO t{i:02d}
                    SELECT g, (g::bigint * 7919) % 100000, md5(g::text) || md5((g + 1)::text),
                           timestamptz '2026-01-01' + g * interval '1 second', g % 10000 / 3.0
                    FROM generate_series(1, {rows}) g;
                CREATE INDEX t{i:02d}_a ON t{i:02d} (a);
                CREATE INDEX t{i:02d}_c ON t{i:02d} (c);
                """  # noqa: S608 - generated names and numbers only
            )
        await conn.execute("VACUUM ANALYZE")
        cur = await conn.execute("SELECT pg_database_size(current_database())")
        row = await cur.fetchone()
    assert row is not None
    print(f"source: {TABLES} tables, {rows} rows each, {row[0] / 1024**2:.0f} MB", flush=True)


async def _ours(target: Target, backup: dict[str, Any], work: Path) -> float:
    outcome = await run_drill(target, backup, work_dir=work)
    if not outcome.passed or outcome.rto_seconds is None:
        raise SystemExit(f"our drill failed: {outcome.error} {outcome.checks}")
    where = next(c for c in outcome.checks if c["check"] == "restored_into")
    print(f"  ours by phase (s): {where['detail']['seconds']}", flush=True)
    return outcome.rto_seconds


def _pipe(source: PrivateCluster, into: PrivateCluster) -> None:
    """pg_dump source | psql into: one job, plain SQL, stop at the first error."""
    dumper = subprocess.Popen(
        [pgtools.binary("pg_dump"), f"--dbname={source.connection().conninfo}"],
        stdout=subprocess.PIPE,
    )
    psql = subprocess.run(
        [
            pgtools.binary("psql"),
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            f"--dbname={into.connection().conninfo}",
        ],
        stdin=dumper.stdout,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    if dumper.stdout is not None:
        dumper.stdout.close()
    if dumper.wait() != 0 or psql.returncode != 0:
        raise SystemExit("the naive restore failed")


async def _naive(source: PrivateCluster, work: Path) -> float:
    started = time.monotonic()
    cluster = PrivateCluster(PrivateCluster.create_base(work, "naive-"))
    try:
        await cluster.init()
        await cluster.start({})  # the defaults a fresh server has
        await asyncio.to_thread(_pipe, source, cluster)
        return time.monotonic() - started
    finally:
        await cluster.remove()


async def main(rounds: int, size_mb: int, compress: int, jobs: int) -> None:
    work = PrivateCluster.create_base(None, "wsinfra-bench-restore-")
    source = PrivateCluster(PrivateCluster.create_base(work, "source-"))
    try:
        await source.init()
        await source.start(FAST_RESTORE)
        t = time.monotonic()
        await _generate(source, size_mb)
        print(f"generated in {time.monotonic() - t:.0f} s", flush=True)
        target = Target.model_validate(
            {
                "name": "bench",
                "source": {"conninfo": source.connection().conninfo, "statement_timeout": "1h"},
                "drill": {"smoke_queries": ["SELECT 1 FROM t00 WHERE id = 1"], "jobs": jobs},
                "compress": compress,
            }
        )
        t = time.monotonic()
        result = await dump.take_backup(target, work / "dumps", uuid.uuid4())
        print(
            f"backup: {result.size_bytes / 1024**2:.0f} MB in {time.monotonic() - t:.0f} s",
            flush=True,
        )
        backup = {"backup_location": result.location, "manifest": result.manifest}
        ours: list[float] = []
        naive: list[float] = []
        for r in range(rounds):
            order = ("ours", "naive") if r % 2 == 0 else ("naive", "ours")
            for name in order:
                if name == "ours":
                    ours.append(await _ours(target, backup, work))
                else:
                    naive.append(await _naive(source, work))
            print(f"round {r + 1}: ours {ours[-1]:.1f} s, naive {naive[-1]:.1f} s", flush=True)
        ratios = [o / n for o, n in zip(ours, naive, strict=True)]
        print(
            f"restore_drill_rto_seconds ours={statistics.median(ours):.1f} "
            f"naive={statistics.median(naive):.1f} ratio={statistics.median(ratios):.2f}"
        )
    finally:
        await source.remove()
        shutil.rmtree(work, ignore_errors=True)


def cli() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.restore_drill")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--compress", type=int, default=1, help="the dump's gzip level (0: none)")
    ap.add_argument("--jobs", type=int, default=4, help="the drill's pg_restore jobs (ours)")
    args = ap.parse_args()
    tempfile.tempdir = None
    asyncio.run(main(args.rounds, args.size_mb, args.compress, args.jobs))


if __name__ == "__main__":
    cli()
