"""The recorder's database side: a pool, one transaction per webhook (the SQL is in
`schema.writes`), idempotent under at-least-once delivery."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from common.config import read_secret_file
from recorder.config import Database
from schema import migrate, writes
from schema.rows import DeploymentEvent, LatestDeployment, Notification

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The database cannot be reached or timed out: the caller answers 503 and is retried."""


class PgStore:
    def __init__(self, cfg: Database) -> None:
        self.cfg = cfg
        self.pool = AsyncConnectionPool(
            cfg.conninfo,
            kwargs=self._connect_kwargs,
            min_size=cfg.pool_min,
            max_size=cfg.pool_max,
            open=False,
            check=AsyncConnectionPool.check_connection,
            configure=self._configure,
            name="recorder",
        )
        self.latest: dict[str, LatestDeployment] = {}

    def _connect_kwargs(self) -> dict[str, Any]:
        # Re-read at each new connection: a rotated password needs no restart.
        if self.cfg.password_file is None:
            return {}
        return {"password": read_secret_file(self.cfg.password_file)}

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(f"SET statement_timeout = {int(self.cfg.statement_timeout * 1000)}")
        await conn.commit()

    async def open(self) -> None:
        # Do not wait: the recorder serves (and answers 503) while the database is away.
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    def _conn(self) -> Any:
        return self.pool.connection(timeout=self.cfg.acquire_timeout)

    async def write_notification(self, n: Notification) -> int:
        try:
            async with self._conn() as conn, conn.transaction():
                await writes.log_notification(conn, n)
                await writes.upsert_alerts(conn, n.alerts)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return len(n.alerts)

    async def write_deployment(
        self, provider: str, delivery: str, event_name: str, event: DeploymentEvent | None
    ) -> bool:
        """Apply a deployment event once; False when this delivery id was already processed."""
        try:
            async with self._conn() as conn:
                async with conn.transaction():
                    if not await writes.claim_delivery(conn, provider, delivery, event_name):
                        return False
                    if event is not None:
                        await writes.upsert_deployment(conn, event)
                await self._refresh_latest(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return True

    async def _refresh_latest(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.latest = await writes.deployment_summary(conn)
        await conn.commit()

    async def load_latest(self) -> None:
        try:
            async with self._conn() as conn:
                await self._refresh_latest(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def migrations_at_head(self) -> bool:
        try:
            async with self.pool.connection(timeout=2) as conn:
                return await migrate.current(conn) == migrate.head()
        except (psycopg.OperationalError, PoolTimeout):
            return False
