"""A restore drill: the steps docs/disaster-recovery.md tells a person to follow, automated.

1. Check the backup's files against its manifest's SHA-256 (a corrupted dump fails here).
2. Get a database to restore into: a private cluster, the scratch server, or (a recovery) a new
   database on a named non-production server.
3. Create the roles the dump refers to, then pg_restore with parallel jobs (tables, then data,
   then indexes and constraints).
4. Verify: schema objects equal to the source's at the dump's snapshot; every table's row count
   equal to the one recorded then; sampled rows' checksums equal; the smoke queries return rows.

RTO is measured from the drill's start to the end of a verification that passed; RPO is the age
of the restored data (the dump's snapshot) when the drill started.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from backups import inventory, pgtools, scratch
from backups.config import RestoreTarget, Target
from backups.dump import DUMP_DIR, file_checksums
from common.postgres import PgConnection, connect
from schema.backups import DrillOutcome

MAX_DETAIL = 20  # differences listed per check; the count says how many there were


def _check(name: str, ok: bool, detail: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"check": name, "ok": ok}
    if detail is not None:
        out["detail"] = detail
    return out


def compare_files(manifest: dict[str, Any], actual: dict[str, dict[str, Any]]) -> dict[str, Any]:
    want = manifest.get("files") or {}
    bad = sorted(
        name
        for name in set(want) | set(actual)
        if (want.get(name) or {}).get("sha256") != (actual.get(name) or {}).get("sha256")
    )
    if not want:
        return _check("checksums", False, "the manifest lists no files")
    return _check(
        "checksums",
        not bad,
        None if not bad else {"differ": len(bad), "files": bad[:MAX_DETAIL]},
    )


def compare_schema(want: dict[str, str], got: dict[str, str]) -> dict[str, Any]:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    changed = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    ok = not (missing or extra or changed)
    detail = (
        {"objects": len(want)}
        if ok
        else {
            "missing": missing[:MAX_DETAIL],
            "extra": extra[:MAX_DETAIL],
            "changed": changed[:MAX_DETAIL],
            "differ": len(missing) + len(extra) + len(changed),
        }
    )
    return _check("schema", ok, detail)


def compare_counts(want: dict[str, int], got: dict[str, int]) -> dict[str, Any]:
    differ = {
        name: {"expected": want.get(name), "restored": got.get(name)}
        for name in sorted(set(want) | set(got))
        if want.get(name) != got.get(name)
    }
    if not differ:
        return _check("row_counts", True, {"tables": len(want), "rows": sum(want.values())})
    listed = dict(list(differ.items())[:MAX_DETAIL])
    return _check("row_counts", False, {"differ": len(differ), "tables": listed})


async def _restore_roles(conn: psycopg.AsyncConnection[Any], roles: list[str]) -> None:
    """Roles are not in a database's dump: create the missing ones (NOLOGIN, no attributes) so
    owners, grants and policies restore as they were."""
    cur = await conn.execute("SELECT rolname FROM pg_roles")
    have = {r[0] for r in await cur.fetchall()}
    for role in roles:
        if role not in have:
            with contextlib.suppress(psycopg.errors.DuplicateObject):
                await conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))


async def restore(
    dump: Path, into: PgConnection, manifest: dict[str, Any], *, jobs: int, timeout: float
) -> dict[str, Any]:
    conn = await connect(into, "wsinfra-backups")
    try:
        await conn.set_autocommit(True)
        await _restore_roles(conn, list(manifest.get("roles") or []))
    finally:
        await conn.close()
    async with pgtools.libpq_env(into) as env:
        try:
            await pgtools.run(
                [
                    pgtools.binary("pg_restore"),
                    f"--jobs={jobs}",
                    "--no-password",
                    f"--dbname={into.conninfo}",
                    str(dump),
                ],
                env=env,
                timeout=timeout,
            )
        except pgtools.ToolError as exc:
            return _check("restore", False, str(exc))
    return _check("restore", True)


async def _counts(
    into: PgConnection, tables: list[inventory.TableInfo], jobs: int
) -> dict[str, int]:
    """Every table's row count, on `jobs` connections at once (largest tables first, each
    connection taking the next table when it is done): the counts read every row, and on a
    large database they are most of the verification."""
    queue = sorted(tables, key=lambda t: -t.reltuples)
    got: dict[str, int] = {}

    async def counter() -> None:
        conn = await connect(into, "wsinfra-backups")
        try:
            await conn.set_autocommit(True)
            while queue:
                t = queue.pop(0)
                got[t.name] = await inventory.row_count(conn, t)
        finally:
            await conn.close()

    await asyncio.gather(*(counter() for _ in range(max(1, min(jobs, len(tables))))))
    return got


async def verify(
    into: PgConnection, manifest: dict[str, Any], smoke_queries: tuple[str, ...], *, jobs: int = 1
) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    conn = await connect(into, "wsinfra-backups")
    try:
        await conn.set_autocommit(True)
        await inventory.prepare_session(conn)
        checks.append(
            compare_schema(
                manifest.get("schema_objects") or {},
                await inventory.schema_objects(conn, int(manifest.get("schema_digest", 1))),
            )
        )
        tables = {t.name: t for t in await inventory.tables(conn)}
        got = await _counts(into, list(tables.values()), jobs)
        checks.append(compare_counts(manifest.get("row_counts") or {}, got))
        checks.append(await _compare_samples(conn, tables, manifest.get("samples") or {}))
        for i, query in enumerate(smoke_queries):
            checks.append(await _smoke(conn, i, query))
    finally:
        await conn.close()
    return checks


async def _compare_samples(
    conn: psycopg.AsyncConnection[Any],
    tables: dict[str, inventory.TableInfo],
    samples: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    differ: list[str] = []
    compared = 0
    for name, s in sorted(samples.items()):
        t = tables.get(name)
        rows = [list(map(str, r)) for r in s.get("rows") or []]
        if t is None or list(t.pk) != list(s.get("pk") or []):
            differ.append(f"{name}: table or primary key missing")
            continue
        got = await inventory.sampled_digests(conn, t, [r[:-1] for r in rows])
        for r in rows:
            compared += 1
            if got.get(tuple(r[:-1])) != r[-1]:
                differ.append(f"{name} ({', '.join(r[:-1])[:80]})")
    if differ:
        return _check("samples", False, {"differ": len(differ), "rows": differ[:MAX_DETAIL]})
    return _check("samples", True, {"rows": compared})


async def _smoke(conn: psycopg.AsyncConnection[Any], i: int, query: str) -> dict[str, Any]:
    name = f"smoke_query_{i + 1}"
    try:
        async with conn.transaction(force_rollback=True):
            cur = await conn.execute(query)  # the operator's config
            row = await cur.fetchone() if cur.description else None
    except psycopg.Error as exc:
        reason = pgtools.pg_reason(exc)
        return _check(name, False, f"failed: {str(reason)[:300]}")
    return _check(name, row is not None, None if row is not None else "returned no rows")


def _rpo(manifest: dict[str, Any], drill_started: datetime) -> float | None:
    at = manifest.get("snapshot_at")
    if not isinstance(at, str):
        return None
    return max(0.0, (drill_started - datetime.fromisoformat(at)).total_seconds())


@contextlib.asynccontextmanager
async def _kept_database(
    target: RestoreTarget,
) -> AsyncIterator[tuple[PgConnection, str, dict[str, Any]]]:
    """A disaster-recovery restore: a new database on the named server, kept afterwards."""
    name = scratch.new_database_name(target.database_prefix)
    conn = await scratch.create_database(target, name)
    yield conn, target.name, {"database": name}


async def run_drill(
    target: Target,
    backup: dict[str, Any],
    *,
    restore_target: RestoreTarget | None = None,
    work_dir: Path | None = None,
) -> DrillOutcome:
    """Restore `backup` (a backup_status row with its manifest) and verify it."""
    t0 = time.monotonic()
    drill_started = datetime.now(UTC)
    manifest: dict[str, Any] = backup.get("manifest") or {}
    location = Path(str(backup.get("backup_location") or ""))
    checks: list[dict[str, Any]] = []
    try:
        actual = await asyncio.to_thread(file_checksums, location / DUMP_DIR)
    except OSError as exc:
        return DrillOutcome(False, [], None, None, None, f"cannot read {location}: {exc.strerror}")
    checks.append(compare_files(manifest, actual))
    # Where the RTO went, recorded with the outcome: what to speed up, and what an estimate of
    # a larger restore should scale.
    phases: dict[str, float] = {"checksums": round(time.monotonic() - t0, 3)}
    if not checks[-1]["ok"]:
        return DrillOutcome(
            False, checks, None, None, None, "the backup's files do not match its manifest"
        )
    where = (
        _kept_database(restore_target)
        if restore_target is not None
        else scratch.scratch_database(target.drill.scratch, parent=work_dir)
    )
    try:
        async with where as (into, _, details):
            mark = time.monotonic()
            phases["setup"] = round(mark - t0 - phases["checksums"], 3)
            checks.append(
                await restore(
                    location / DUMP_DIR,
                    into,
                    manifest,
                    jobs=target.drill.jobs,
                    timeout=target.drill.timeout,
                )
            )
            phases["restore"] = round(time.monotonic() - mark, 3)
            mark = time.monotonic()
            checks.extend(
                await verify(into, manifest, target.drill.smoke_queries, jobs=target.drill.jobs)
            )
            phases["verify"] = round(time.monotonic() - mark, 3)
            rto = time.monotonic() - t0
            size = await _size(into)
            checks.append(_check("restored_into", True, {**details, "seconds": phases}))
    except (scratch.ScratchError, pgtools.ToolError) as exc:
        return DrillOutcome(False, checks, None, None, None, str(exc))
    except psycopg.Error as exc:
        reason = pgtools.pg_reason(exc)
        return DrillOutcome(False, checks, None, None, None, f"verification failed: {reason}")
    passed = all(c["ok"] for c in checks)
    failed = [c["check"] for c in checks if not c["ok"]]
    return DrillOutcome(
        passed=passed,
        checks=checks,
        rto_seconds=rto if passed else None,
        rpo_seconds=_rpo(manifest, drill_started),
        restored_bytes=size,
        error=None if passed else f"checks failed: {', '.join(failed)}",
    )


async def _size(into: PgConnection) -> int:
    conn = await connect(into, "wsinfra-backups")
    try:
        return await inventory.database_size(conn)
    finally:
        await conn.close()
