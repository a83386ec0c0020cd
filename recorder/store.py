"""The recorder's database side: a pool, one transaction per webhook (the SQL is in
`schema.writes`), idempotent under at-least-once delivery."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from common import postgres
from common.ingress import scrub
from recorder.config import Database
from schema import migrate, writes
from schema.rows import DeploymentEvent, LatestDeployment, Notification, RejectedAlert

log = logging.getLogger(__name__)


# A unit of writes on one connection, run inside the caller's transaction.
Write = Callable[[psycopg.AsyncConnection[Any]], Awaitable[object]]


class StoreUnavailable(Exception):
    """The database cannot be reached or timed out: the caller journals or retries."""


class StoreRefused(Exception):
    """The database refused the data itself (a value out of a column's range): retrying the same
    write can never succeed."""


def _sqlstate(exc: psycopg.Error) -> str:
    return f"{type(exc).__name__} (SQLSTATE {exc.sqlstate})"


class PgStore:
    def __init__(self, cfg: Database) -> None:
        self.cfg = cfg
        self.pool = postgres.pool(
            cfg, "wsinfra-recorder", check=AsyncConnectionPool.check_connection
        )
        self.latest: dict[str, LatestDeployment] = {}

    async def open(self) -> None:
        # Do not wait: the recorder serves (and answers 503) while the database is away.
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    def _conn(self) -> Any:
        return self.pool.connection(timeout=self.cfg.acquire_timeout)

    async def write_notification(self, n: Notification) -> int:
        """Store a notification in one transaction; the number of alerts stored."""
        async with self._guard(), self._conn() as conn:
            return await self._notification(conn, n)

    async def _notification(self, conn: psycopg.AsyncConnection[Any], n: Notification) -> int:
        try:
            async with conn.transaction():
                await writes.log_notification(conn, n)
                await writes.upsert_alerts(conn, n.alerts, notified=n.notified)
                await writes.dead_letter_alerts(conn, n)
            return len(n.alerts)
        except (psycopg.DataError, psycopg.IntegrityError):
            pass
        # Something the parser let through and the database refused: store the alerts one at a
        # time under savepoints and dead-letter the refused ones, so they never block the rest.
        stored, refused = 0, list(n.rejected)
        async with conn.transaction():
            await writes.log_notification(conn, n)
            for i, alert in enumerate(n.alerts):
                try:
                    async with conn.transaction():
                        await writes.upsert_alerts(conn, (alert,), notified=n.notified)
                    stored += 1
                except (psycopg.DataError, psycopg.IntegrityError) as exc:
                    refused.append(
                        RejectedAlert(i, "db_refused", _sqlstate(exc), scrub(alert.alert_rule))
                    )
            await writes.dead_letter_alerts(conn, replace(n, rejected=tuple(refused)))
        return stored

    async def write_deployment(
        self, provider: str, delivery: str, event_name: str, event: DeploymentEvent | None
    ) -> bool:
        """Apply a deployment event once; False when this delivery id was already processed."""
        async with self._guard(), self._conn() as conn:
            fresh = await self._deployment(conn, provider, delivery, event_name, event)
            await self._refresh_latest(conn)
            return fresh

    async def _deployment(
        self,
        conn: psycopg.AsyncConnection[Any],
        provider: str,
        delivery: str,
        event_name: str,
        event: DeploymentEvent | None,
    ) -> bool:
        async with conn.transaction():
            if not await writes.claim_delivery(conn, provider, delivery, event_name):
                return False
            if event is not None:
                await writes.upsert_deployment(conn, event)
        return True

    async def apply_journaled(self, journal_id: str, seq: int, write: Write) -> bool:
        """Run a journal record's writes and advance the journal's position in one transaction;
        False (and nothing written) when this record was applied before."""
        async with self._guard(), self._conn() as conn:
            async with conn.transaction():
                if not await writes.advance_journal(conn, journal_id, seq):
                    return False
                await write(conn)
            return True

    async def journal_position(self, journal_id: str) -> int:
        async with self._guard(), self._conn() as conn:
            return await writes.journal_position(conn, journal_id)

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Transient trouble (no connection, a timeout, a missing table before migrations) is
        StoreUnavailable, which callers journal or retry; data the database refuses is not."""
        try:
            yield
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            raise StoreRefused(_sqlstate(exc)) from exc
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def _refresh_latest(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.latest = await writes.deployment_summary(conn)
        await conn.commit()

    async def load_latest(self) -> None:
        async with self._guard(), self._conn() as conn:
            await self._refresh_latest(conn)

    def notification_writer(self, n: Notification) -> Write:
        async def write(conn: psycopg.AsyncConnection[Any]) -> object:
            return await self._notification(conn, n)

        return write

    def deployment_writer(
        self, provider: str, delivery: str, event_name: str, event: DeploymentEvent | None
    ) -> Write:
        async def write(conn: psycopg.AsyncConnection[Any]) -> object:
            return await self._deployment(conn, provider, delivery, event_name, event)

        return write

    async def migrations_at_head(self) -> bool:
        try:
            async with self.pool.connection(timeout=2) as conn:
                return await migrate.current(conn) == migrate.head()
        except (psycopg.OperationalError, PoolTimeout):
            return False
