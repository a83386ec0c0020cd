"""The ingest benchmark's baseline: the recorder's own HTTP app over a naive store that writes
each alert with its own autocommitted INSERT on one connection (no transaction, no pipeline)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import asdict
from typing import Any

import psycopg
from aiohttp import web
from psycopg.types.json import Jsonb

from recorder.app import make_app
from recorder.store import Write
from schema.rows import DeploymentEvent, LatestDeployment, Notification
from schema.writes import _LOG_NOTIFICATION, _UPSERT_ALERT


class NaiveStore:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.latest: dict[str, LatestDeployment] = {}
        self.pool = None
        self.lock = asyncio.Lock()

    async def write_notification(self, n: Notification) -> int:
        async with self.lock:  # one connection: one statement at a time
            await self.conn.execute(
                _LOG_NOTIFICATION,
                (
                    n.receiver,
                    n.group_key,
                    n.status,
                    n.truncated_alerts,
                    len(n.alerts),
                    Jsonb(n.raw),
                ),
            )
            for a in n.alerts:
                await self.conn.execute(
                    _UPSERT_ALERT, {**asdict(a), "alert_rule": Jsonb(a.alert_rule)}
                )
        return len(n.alerts)

    async def write_deployment(
        self, provider: str, delivery: str, event_name: str, event: DeploymentEvent | None
    ) -> bool:
        raise NotImplementedError("the baseline only ingests alerts")

    async def migrations_at_head(self) -> bool:
        return True

    async def load_latest(self) -> None:
        return None

    # The baseline has no journal (make_app is given none), so these are never called.
    async def apply_journaled(self, journal_id: str, seq: int, write: Write) -> bool:
        raise NotImplementedError("the baseline has no journal")

    def notification_writer(self, n: Notification) -> Write:
        raise NotImplementedError("the baseline has no journal")

    def deployment_writer(
        self, provider: str, delivery: str, event_name: str, event: DeploymentEvent | None
    ) -> Write:
        raise NotImplementedError("the baseline has no journal")


class _Secrets:
    def __init__(self, token: bytes) -> None:
        self.alertmanager_token = token
        self.vercel_secret: bytes | None = None
        self.github_secret: bytes | None = None


async def serve(conninfo: str, port: int, token: str) -> None:
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    app = make_app(NaiveStore(conn), _Secrets(token.encode()), max_body_bytes=16 * 1024 * 1024)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
