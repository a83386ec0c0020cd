"""The Vercel exporter's HTTP side: /metrics, the drain endpoints, a landing page and health."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from common.build_info import build_info
from common.web import healthy, landing_page
from exporters.vercel.api import VercelApi
from exporters.vercel.config import VercelConfig
from exporters.vercel.deployments import DeploymentTracker
from exporters.vercel.drains import DrainReceiver


class Exporter:
    """Everything /metrics reports: the deployments poller (if a token is set) and the drains."""

    def __init__(
        self,
        cfg: VercelConfig,
        secrets: dict[str, str],
        *,
        api: VercelApi | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.drains = DrainReceiver(cfg, secrets, clock)
        if api is None and "token" in secrets:
            api = VercelApi.from_config(cfg.api, secrets["token"], clock=clock)
        self.tracker = DeploymentTracker(cfg.api, cfg.project_names(), api, clock) if api else None

    def up(self) -> bool:
        return self.tracker.up() if self.tracker else True


class _Collector(Collector):
    def __init__(self, exporter: Exporter, scrape_start: float) -> None:
        self.e = exporter
        self.start = scrape_start

    def collect(self) -> Iterable[Metric]:
        e = self.e
        ver, rev = build_info()
        info = InfoMetricFamily("vercel_build", "Version of the wsinfra Vercel exporter.")
        info.add_metric([], {"version": ver, "revision": rev})
        yield info
        yield GaugeMetricFamily(
            "vercel_up",
            "1 if the deployments data served is fresh (every project refreshed within "
            "stale_after), or no API token is configured (drains only); 0 otherwise.",
            value=1.0 if e.up() else 0.0,
        )
        yield GaugeMetricFamily(
            "vercel_api_polling_enabled",
            "1 if an API token is configured and deployments are polled.",
            value=1.0 if e.tracker else 0.0,
        )
        for c in e.drains.collectors():
            yield c.collect()
        yield from e.drains.meta()
        if e.tracker:
            for c in e.tracker.collectors():
                yield c.collect()
            yield from e.tracker.snapshot()
        yield GaugeMetricFamily(
            "vercel_scrape_duration_seconds",
            "Time this exporter took to gather the metrics of this scrape.",
            value=time.perf_counter() - self.start,
        )


def render(exporter: Exporter) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(exporter, time.perf_counter()))
    return generate_latest(registry)


EXPORTER = web.AppKey("exporter", Exporter)


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.get_running_loop().run_in_executor(None, render, request.app[EXPORTER])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.Response:
    e = request.app[EXPORTER]
    drains = [
        f"{n}: {'enabled' if ep.cfg else 'not configured'}" for n, ep in e.drains.endpoints.items()
    ]
    polling = "on" if e.tracker else "off (no API token)"
    return landing_page(
        "Vercel",
        [(f"Deployments polling: {polling}", []), ("Drains (POST /drains/<name>):", drains)],
    )


async def ready(request: web.Request) -> web.Response:
    # Ready means able to take drain deliveries; API trouble shows in vercel_up, not here,
    # or an orchestrator would restart a healthy exporter during a Vercel outage.
    return web.Response(text="OK\n")


def make_app(exporter: Exporter) -> web.Application:
    app = web.Application()
    app[EXPORTER] = exporter

    async def run_poller(app: web.Application) -> AsyncIterator[None]:
        tracker = app[EXPORTER].tracker
        task = asyncio.create_task(tracker.run()) if tracker else None
        yield
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if tracker:
            await tracker.api.aclose()

    app.cleanup_ctx.append(run_poller)
    d = exporter.drains
    for path, name in (
        ("/drains/logs", "logs"),
        ("/drains/traces", "traces"),
        ("/v1/traces", "traces"),  # OTLP/HTTP's conventional path
        ("/drains/speed-insights", "speed_insights"),
    ):
        handler = d.handler(name)
        app.router.add_post(path, handler)
        app.router.add_get(path, handler)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    return app
