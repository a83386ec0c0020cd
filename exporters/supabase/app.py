"""The Supabase exporter on the shared exporter app (common.exporter).

On each scrape `snapshot()` runs the SQL queries of every configured database (concurrently,
each within its scrape budget) and takes the Management API's current view; both are
immutable, and `collect()` renders them without touching either source. The Management API's
refresh loop runs in the background (`loops()`), and with `record:` the mirror of its backups
into backup_status on a task of its own (`background()`); `/probe` and `/sd` re-expose
Supabase's own per-project metrics endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client.core import Metric

from common import exporter as shared
from common.refresh import RefreshLoop
from exporters.supabase import management, project_metrics, scrape
from exporters.supabase.backup_record import BackupRecord
from exporters.supabase.config import SupabaseConfig
from exporters.supabase.management import ManagementSource, ManagementView
from exporters.supabase.project_metrics import ProjectMetricsProxy, Refused
from exporters.supabase.scrape import DatabaseScraper, DatabaseSnapshot


@dataclass(frozen=True, slots=True)
class SupabaseSnapshot:
    databases: tuple[DatabaseSnapshot, ...] = ()
    management: ManagementView | None = None
    # /probe and /sd requests refused, by endpoint and reason (None: project_metrics is off).
    refused: Refused | None = None


def collect(snapshot: SupabaseSnapshot) -> list[Metric]:
    """The pure collector: every database's families, then the Management API's, then the
    refusals of /probe and /sd."""
    out = scrape.render(snapshot.databases)
    if snapshot.management is not None:
        out += management.collect(snapshot.management)
    if snapshot.refused is not None:
        out += project_metrics.collect(snapshot.refused)
    return out


class SupabaseExporter(shared.ExporterDefaults):
    namespace = "supabase"
    title = "Supabase"

    def __init__(self, cfg: SupabaseConfig, *, management: ManagementSource | None = None) -> None:
        self.cfg = cfg
        self.scrapers = tuple(DatabaseScraper(db) for db in cfg.databases)
        if management is None and cfg.management is not None:
            record = (
                BackupRecord(cfg.record, cfg.management.projects)
                if cfg.record is not None
                else None
            )
            management = ManagementSource(cfg.management, record=record)
        self.management = management
        self.project_metrics = (
            ProjectMetricsProxy(cfg.project_metrics, management.known if management else None)
            if cfg.project_metrics
            else None
        )

    async def snapshot(self) -> SupabaseSnapshot:
        databases = await asyncio.gather(*(s.scrape() for s in self.scrapers))
        view = self.management.view() if self.management is not None else None
        proxy = self.project_metrics
        refused = proxy.refused_counts() if proxy is not None else None
        return SupabaseSnapshot(tuple(databases), view, refused)

    def collect(self, snapshot: SupabaseSnapshot) -> Iterable[Metric]:
        return collect(snapshot)

    def up(self, snapshot: SupabaseSnapshot) -> Mapping[tuple[str, ...], bool]:
        # One per database: SupabaseDatabaseDown and the dashboards' project variable read it.
        return {(d.db.name,): d.up for d in snapshot.databases}

    def up_labels(self) -> tuple[str, ...]:
        return ("project",)

    def up_help(self) -> str:
        return scrape.UP_HELP

    def loops(self) -> Mapping[str, tuple[RefreshLoop[Any], str]]:
        if self.management is None:
            return {}
        return {management.PREFIX: (self.management.loop, management.WHAT)}

    def background(self) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
        # The mirror into backup_status writes on its own task, never on the refresh loop's.
        if self.management is None or self.management.record is None:
            return ()
        return [self.management.record.run]

    def landing(self) -> list[tuple[str, list[str]]]:
        return [("Databases:", [s.db.name for s in self.scrapers])]

    async def aclose(self) -> None:
        for s in self.scrapers:
            await s.close()
        if self.management is not None:
            await self.management.aclose()
        if self.project_metrics is not None:
            await self.project_metrics.aclose()


def make_app(exporter: SupabaseExporter) -> web.Application:
    proxy = exporter.project_metrics
    routes = [web.get("/probe", proxy.probe), web.get("/sd", proxy.sd)] if proxy is not None else []
    # A few hundred lines at most: rendered on the loop (a thread hop would cost more).
    return shared.make_app(exporter, routes=routes)
