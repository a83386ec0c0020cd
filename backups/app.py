"""The backup worker on the shared exporter app: the worker loop runs in the background, a
refresh loop reads the record into an immutable snapshot, and each scrape renders it with the
worker's job counters (figures.collect)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web
from prometheus_client.core import Metric

from backups import figures
from backups.config import BackupsConfig
from backups.worker import APP, Worker
from common import exporter as shared
from common.postgres import connect
from common.refresh import RefreshLoop
from common.upstream import UpstreamError

# The source databases are asked their size (a connection each), and the WAL archives listed for
# the PITR window (a stat per segment), this often: often enough for a recovery estimate, rarely
# enough to cost production and a large archive nothing.
SLOW_READS_EVERY = 300.0


class BackupExporter(shared.ExporterDefaults):
    namespace = "backup"
    title = "backup worker"

    def __init__(self, cfg: BackupsConfig, *, work_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.worker = Worker(cfg, work_dir=work_dir)
        self._sizes: dict[str, float] = {}
        self._windows: tuple[tuple[str, float, float], ...] = ()
        self._slow_at = 0.0
        self.loop: RefreshLoop[figures.Snapshot] = RefreshLoop(
            "backup record",
            self.refresh,
            interval=cfg.refresh_interval,
            stale_after=cfg.stale_after,
            # The record is ours, not a rate-limited vendor: try again soon after an outage.
            first_backoff=cfg.refresh_interval,
            max_backoff=120.0,
            errors_metric=False,
        )

    async def refresh(self) -> figures.Snapshot:
        try:
            conn = await connect(self.cfg.record, APP)
        except psycopg.Error as exc:
            self._count_read_error()
            raise UpstreamError("unreachable", type(exc).__name__) from None
        try:
            backups, drills = await figures.read(conn)
        except psycopg.Error as exc:
            self._count_read_error()
            raise UpstreamError("other", type(exc).__name__) from None
        finally:
            await conn.close()
        await self._slow_reads()
        return figures.Snapshot(backups, drills, tuple(sorted(self._sizes.items())), self._windows)

    def _count_read_error(self) -> None:
        errors = self.worker.stats.record_errors
        errors["read"] = errors.get("read", 0) + 1

    async def _slow_reads(self) -> None:
        if self._slow_at and time.monotonic() - self._slow_at < SLOW_READS_EVERY:
            return
        self._slow_at = time.monotonic()
        self._windows = await asyncio.to_thread(figures.pitr_windows, self.cfg)
        for t in self.cfg.targets:
            try:
                conn = await connect(t.source, APP)
            except psycopg.Error:
                self._sizes.pop(t.name, None)  # unknown now: not the last value forever
                continue
            try:
                cur = await conn.execute("SELECT pg_database_size(current_database())")
                row = await cur.fetchone()
                if row is not None:
                    self._sizes[t.name] = float(row[0])
            except psycopg.Error:
                self._sizes.pop(t.name, None)
            finally:
                await conn.close()

    async def snapshot(self) -> tuple[figures.Snapshot | None, figures.JobStats]:
        return (self.loop.current() if self.loop.fresh() else None), self.worker.stats.copy()

    def collect(
        self, snapshot: tuple[figures.Snapshot | None, figures.JobStats]
    ) -> Iterable[Metric]:
        return figures.collect(self.cfg, snapshot[0], snapshot[1])

    def up(self, snapshot: tuple[figures.Snapshot | None, figures.JobStats]) -> bool:
        return snapshot[0] is not None and self.loop.failures_in_a_row == 0

    def up_help(self) -> str:
        return (
            "1 when the last read of the backup record (backup_status, restore_drills) succeeded."
        )

    def loops(self) -> Mapping[str, tuple[RefreshLoop[Any], str]]:
        return {"backup_record": (self.loop, "the backup record")}

    def background(self) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
        return [self.worker.run]

    def landing(self) -> list[tuple[str, list[str]]]:
        demo = (
            ["DEMO: backs up and restores the demo stack's own database"] if self.cfg.demo else []
        )
        return [
            *([("Mode:", demo)] if demo else []),
            ("Targets:", [t.name for t in self.cfg.targets] or ["(none configured)"]),
            ("Restore targets:", [r.name for r in self.cfg.restore_targets] or ["(none)"]),
        ]


def make_app(exporter: BackupExporter) -> web.Application:
    return shared.make_app(exporter)
