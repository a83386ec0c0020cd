"""Where a drill restores: a private PostgreSQL cluster created for it (initdb, a Unix socket in
its own directory, no TCP port, removed afterwards), or a database created on a configured
scratch server and dropped afterwards.

The private cluster is tuned for a restore nobody needs to survive a crash: no fsync, minimal
WAL (so pg_restore's parallel COPY into tables it just created skips WAL), big
maintenance_work_mem for the index builds, no autovacuum racing the load. A disaster-recovery
restore into a real server gets none of this: it runs on that server's own settings.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from backups import pgtools
from backups.config import Scratch
from common.postgres import PgConnection, connect

FAST_RESTORE: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "archive_mode": "off",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "autovacuum": "off",
    "maintenance_work_mem": "512MB",
    "shared_buffers": "256MB",
    "max_parallel_maintenance_workers": "2",
}
PORT = 5432  # only names the socket file: the cluster listens on no TCP port


class ScratchError(Exception):
    """The scratch server or cluster could not be used; the message is safe to record."""


def _server_user() -> str | None:
    """initdb refuses to run as root: then the cluster is the postgres user's."""
    return "postgres" if os.geteuid() == 0 else None


class PrivateCluster:
    """A throwaway cluster under `base` (a directory this object owns and removes)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.sock = base / "sock"
        self.log = base / "server.log"
        self.user = _server_user()
        self.started = False

    @classmethod
    def create_base(cls, parent: Path | None = None, prefix: str = "wsinfra-drill-") -> Path:
        base = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        (base / "sock").mkdir()
        user = _server_user()
        if user is not None:
            pw = pwd.getpwnam(user)
            for p in (base, base / "sock"):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        return base

    def _argv(self, *argv: str) -> list[str]:
        return list(argv) if self.user is None else ["runuser", "-u", self.user, "--", *argv]

    async def init(self) -> None:
        await pgtools.run(
            self._argv(
                pgtools.binary("initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ),
            timeout=120,
        )

    def own(self, path: Path) -> None:
        """Give `path` (a data directory copied in, an archive) to the server's user."""
        if self.user is None:
            return
        pw = pwd.getpwnam(self.user)
        for root, dirs, files in os.walk(path):
            os.chown(root, pw.pw_uid, pw.pw_gid)
            for name in (*dirs, *files):
                with contextlib.suppress(FileNotFoundError):
                    os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)

    async def start(self, settings: Mapping[str, str] = FAST_RESTORE) -> None:
        opts = [
            f"-p {PORT}",
            f"-k {self.sock}",
            "-c listen_addresses=''",
            *(f"-c {k}={v}" for k, v in settings.items()),
        ]
        await pgtools.run(
            self._argv(
                pgtools.binary("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                " ".join(opts),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "120",
                "start",
            ),
            timeout=150,
        )
        self.started = True

    async def stop(self) -> None:
        if not self.started:
            return
        with contextlib.suppress(pgtools.ToolError):
            await pgtools.run(
                self._argv(
                    pgtools.binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
                ),
                timeout=60,
            )
        self.started = False

    async def remove(self) -> None:
        await self.stop()
        await asyncio.to_thread(shutil.rmtree, self.base, True)

    def connection(self, db: str = "postgres", statement_timeout: float = 3600.0) -> PgConnection:
        return PgConnection(
            conninfo=f"host={self.sock} port={PORT} user=postgres dbname={db}",
            statement_timeout=f"{int(statement_timeout)}s",  # type: ignore[arg-type]  # a Duration
        )

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])[:1000]


# A cluster directory made by initdb once per process and copied for each drill: initdb is
# most of a private cluster's setup (it bootstraps the catalogue), a copy a fraction of it.
_TEMPLATES: dict[Path | None, Path] = {}


async def _template(parent: Path | None) -> Path:
    held = _TEMPLATES.get(parent)
    if held is not None and (held / "data" / "PG_VERSION").is_file():
        return held
    base = PrivateCluster.create_base(parent, "wsinfra-drill-template-")
    try:
        await PrivateCluster(base).init()
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, base, True)
        raise
    atexit.register(shutil.rmtree, base, True)
    _TEMPLATES[parent] = base
    return base


async def new_private_cluster(parent: Path | None = None) -> PrivateCluster:
    """A private cluster's data directory, ready to start: a copy of this process's initdb."""
    template = await _template(parent)
    cluster = PrivateCluster(PrivateCluster.create_base(parent))
    try:
        await asyncio.to_thread(shutil.copytree, template / "data", cluster.data, symlinks=True)
        await asyncio.to_thread(cluster.own, cluster.data)
    except BaseException:
        await cluster.remove()
        raise
    return cluster


def with_dbname(conn: PgConnection, db: str) -> PgConnection:
    """The same server and credentials, another database."""
    from psycopg.conninfo import make_conninfo

    return conn.model_copy(update={"conninfo": make_conninfo(conn.conninfo, dbname=db)})


def new_database_name(prefix: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"{prefix}_{stamp}_{uuid.uuid4().hex[:6]}"


async def create_database(server: PgConnection, name: str) -> PgConnection:
    """CREATE DATABASE `name` on `server` (refused if it exists): its connection."""
    try:
        conn = await connect(server, "wsinfra-backups")
    except psycopg.Error as exc:
        raise ScratchError(
            f"cannot connect to the scratch server: {pgtools.pg_reason(exc)}"
        ) from None
    try:
        await conn.set_autocommit(True)
        await conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(name)
            )
        )
    except psycopg.Error as exc:
        raise ScratchError(f"cannot create database {name}: {pgtools.pg_reason(exc)}") from None
    finally:
        await conn.close()
    return with_dbname(server, name)


async def drop_database(server: PgConnection, name: str, prefix: str) -> None:
    """Drop a database this worker created (only names with its prefix, never another)."""
    if not name.startswith(prefix + "_"):
        raise ScratchError(f"refusing to drop {name}: not a database this worker created")
    conn = await connect(server, "wsinfra-backups")
    try:
        await conn.set_autocommit(True)
        await conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_database(
    scratch: Scratch | str, *, parent: Path | None = None
) -> AsyncIterator[tuple[PgConnection, str, dict[str, Any]]]:
    """A database to restore into, removed afterwards: (its connection, where, details).
    `where` is what restore_drills.restore_into records: 'private' or 'scratch'."""
    started = time.monotonic()
    if isinstance(scratch, Scratch):
        name = new_database_name(scratch.database_prefix)
        conn = await create_database(scratch, name)
        try:
            yield conn, "scratch", {"database": name}
        finally:
            with contextlib.suppress(Exception):
                await drop_database(scratch, name, scratch.database_prefix)
        return
    try:
        cluster = await new_private_cluster(parent)
    except (pgtools.ToolError, OSError) as exc:
        raise ScratchError(f"cannot create a private cluster: {exc}") from None
    try:
        try:
            await cluster.start()
        except pgtools.ToolError as exc:
            raise ScratchError(f"cannot start a private cluster: {exc}") from None
        restored = await create_database(cluster.connection("postgres"), "restored")
        setup = time.monotonic() - started
        yield restored, "private", {"setup_seconds": round(setup, 3)}
    finally:
        await cluster.remove()
