"""Forward-only, numbered SQL migrations, applied in one transaction under an advisory lock."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant shared by every recorder: two starting at once serialize on it.
LOCK_KEY = 0x7773696E667261  # "wsinfra"


class MigrationError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available(folder: Path = MIGRATIONS) -> list[Migration]:
    out = []
    for path in sorted(folder.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNNN_what.sql")
        out.append(Migration(int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in out]
    if versions != list(range(1, len(out) + 1)):
        raise MigrationError(f"migration numbers must be 1..N without gaps, got {versions}")
    return out


def head() -> int:
    return len(available())


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
)
"""


async def apply(conn: psycopg.AsyncConnection[Any], folder: Path = MIGRATIONS) -> list[int]:
    """Apply what is missing; return the versions applied. Re-running is a no-op."""
    todo = available(folder)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        await conn.execute(_BOOKKEEPING)
        cur = await conn.execute("SELECT version, checksum FROM schema_migrations")
        done = {int(v): str(c) for v, c in await cur.fetchall()}
        applied = []
        for m in todo:
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version:04d}_{m.name} was changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            await conn.execute(m.sql.encode())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (m.version, m.name, m.checksum),
            )
            applied.append(m.version)
            log.info("migration applied", extra={"version": m.version, "migration": m.name})
    return applied


async def current(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return 0
    cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    row = await cur.fetchone()
    return int(row[0]) if row else 0
