"""The Supabase exporter's HTTP side: /metrics runs the SQL collectors of every configured
database (concurrently, each within its scrape budget), a landing page and health."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from common.build_info import build_info
from common.web import healthy, landing_page
from exporters.supabase.config import MANAGEMENT_TOKEN, SupabaseConfig
from exporters.supabase.management import ManagementPoller
from exporters.supabase.project_metrics import ProjectMetricsProxy
from exporters.supabase.scrape import DatabaseScraper, Outcome, meta


class Exporter:
    def __init__(
        self,
        cfg: SupabaseConfig,
        secrets: dict[str, str],
        *,
        management: ManagementPoller | None = None,
    ) -> None:
        self.cfg = cfg
        self.scrapers = {db.name: DatabaseScraper(db, secrets.get(db.name)) for db in cfg.databases}
        if management is None and cfg.management is not None:
            management = ManagementPoller(cfg.management, secrets[MANAGEMENT_TOKEN])
        self.management = management
        self.project_metrics = (
            ProjectMetricsProxy(cfg.project_metrics, management) if cfg.project_metrics else None
        )

    async def scrape(self) -> dict[str, Outcome]:
        results = await asyncio.gather(*(s.scrape() for s in self.scrapers.values()))
        return dict(zip(self.scrapers, results, strict=True))

    async def close(self) -> None:
        for s in self.scrapers.values():
            await s.close()
        if self.management is not None:
            await self.management.aclose()
        if self.project_metrics is not None:
            await self.project_metrics.aclose()


class _Snapshot(Collector):
    def __init__(self, outcomes: dict[str, Outcome], management: ManagementPoller | None) -> None:
        self.outcomes = outcomes
        self.management = management

    def collect(self) -> Iterable[Metric]:
        ver, rev = build_info()
        info = InfoMetricFamily("supabase_build", "Version of the wsinfra Supabase exporter.")
        info.add_metric([], {"version": ver, "revision": rev})
        yield info
        # One family per name across databases: the text format forbids repeating a family.
        families: dict[str, Metric] = {}
        for project, out in self.outcomes.items():
            for fam in [*meta(project, out), *out.metrics]:
                have = families.get(fam.name)
                if have is None:
                    families[fam.name] = fam
                else:
                    have.samples += fam.samples
        yield from families.values()
        if self.management is not None:
            yield from self.management.collect()


def render(outcomes: dict[str, Outcome], management: ManagementPoller | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(outcomes, management))
    return generate_latest(registry)


EXPORTER = web.AppKey("exporter", Exporter)


async def metrics(request: web.Request) -> web.Response:
    e = request.app[EXPORTER]
    outcomes = await e.scrape()
    # A few hundred lines at most: rendered on the loop (a thread hop would cost more).
    body = render(outcomes, e.management)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.Response:
    return landing_page("Supabase", [("Databases:", list(request.app[EXPORTER].scrapers))])


def make_app(exporter: Exporter) -> web.Application:
    app = web.Application()
    app[EXPORTER] = exporter

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        poller = app[EXPORTER].management
        task = asyncio.create_task(poller.run()) if poller else None
        yield
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await app[EXPORTER].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/metrics", metrics)
    proxy = exporter.project_metrics
    if proxy is not None:
        app.router.add_get("/probe", proxy.probe)
        app.router.add_get("/sd", proxy.sd)
    app.router.add_get("/", index)
    app.router.add_get("/-/healthy", healthy)
    # Ready as soon as it serves: a database being down is a metric (supabase_up), not a restart.
    app.router.add_get("/-/ready", healthy)
    return app
