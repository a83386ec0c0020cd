"""The uptime exporter's HTTP side: /metrics from the latest results, a landing page and health."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from common.build_info import build_info
from common.web import healthy, landing_page
from exporters.uptime.collector import ExporterMeta, UptimeCollector
from exporters.uptime.config import UptimeConfig
from exporters.uptime.scheduler import Prober

PROBER = web.AppKey("prober", Prober)


async def metrics(request: web.Request) -> web.Response:
    prober = request.app[PROBER]
    ver, rev = build_info()
    meta = ExporterMeta(
        version=ver,
        revision=rev,
        concurrency=prober.cfg.concurrency,
        confirm_attempts=prober.cfg.confirm_attempts,
        healthy=prober.healthy(),
    )
    # Copy on the loop (cheap), render off it: a large render must not stall probes in flight,
    # whose phase timings would then include our own pause.
    states = dict(prober.states)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(UptimeCollector(states, prober.stats, meta, prober.cfg.confirm_delay))
    body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.Response:
    prober = request.app[PROBER]
    rows = [
        f"{n}: "
        + (
            "up"
            if s.last and s.last.success
            else ("down: " + str(s.last.reason) if s.last else "pending")
        )
        for n, s in prober.states.items()
    ]
    return landing_page("uptime", [("Targets:", rows)])


async def ready(request: web.Request) -> web.Response:
    if request.app[PROBER].healthy():
        return web.Response(text="OK\n")
    return web.Response(status=503, text="prober not running\n")


def make_app(cfg: UptimeConfig) -> web.Application:
    app = web.Application()
    app[PROBER] = Prober(cfg)

    async def run_prober(app: web.Application) -> AsyncIterator[None]:
        app[PROBER].start()
        yield
        await app[PROBER].stop()

    app.cleanup_ctx.append(run_prober)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    return app
