"""The Vercel exporter on the shared exporter app (common.exporter): the drain endpoints, and
/metrics rendered from an immutable snapshot.

Two adapters keep state on the event loop: the drain receiver (drains.py; deliveries are merged
as they arrive) and, with an API token, the deployments poller (deployments.py; its refresh loop
runs in the background). Each scrape copies both into a `VercelSnapshot` on the loop
(`snapshot()`), and the pure collector (collector.py) renders it in a worker thread, so a large
exposition never stalls a delivery in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import httpx
from aiohttp import web
from prometheus_client.core import Metric

from common import exporter as shared
from common.upstream import Upstream
from exporters.vercel import api, collector
from exporters.vercel.config import VercelConfig
from exporters.vercel.deployments import DeploymentsSource
from exporters.vercel.drains import DrainReceiver
from exporters.vercel.snapshot import VercelSnapshot

# The drain endpoints: each takes POST (deliveries) and GET/HEAD (Vercel's verification).
DRAIN_PATHS = (
    ("/drains/logs", "logs"),
    ("/drains/traces", "traces"),
    ("/v1/traces", "traces"),  # OTLP/HTTP's conventional path
    ("/drains/speed-insights", "speed_insights"),
)


class VercelExporter(shared.ExporterDefaults):
    """Everything /metrics reports: the drains, and the deployments poller if a token is set."""

    namespace = "vercel"
    title = "Vercel"

    def __init__(
        self,
        cfg: VercelConfig,
        secrets: dict[str, str],
        *,
        upstream: Upstream | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.drains = DrainReceiver(cfg, secrets, clock)
        if upstream is None and "token" in secrets:
            upstream = api.make_upstream(cfg.api, transport=transport, clock=clock, sleep=sleep)
        self.deployments = (
            DeploymentsSource(cfg.api, cfg.project_names(), upstream, clock=clock, sleep=sleep)
            if upstream is not None
            else None
        )

    def take_snapshot(self) -> VercelSnapshot:
        """The scrape's copy of both adapters (on the event loop that changes them)."""
        return VercelSnapshot(
            now=self.clock(),
            drains=self.drains.snapshot(),
            polling=self.deployments.view() if self.deployments is not None else None,
        )

    async def snapshot(self) -> VercelSnapshot:
        return self.take_snapshot()

    def collect(self, snapshot: VercelSnapshot) -> Iterable[Metric]:
        return collector.collect(snapshot)

    def up(self, snapshot: VercelSnapshot) -> bool:
        return collector.up(snapshot)

    def up_help(self) -> str:
        return collector.UP_HELP

    def background(self) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
        return [self.deployments.loop.run] if self.deployments is not None else []

    def landing(self) -> list[tuple[str, list[str]]]:
        drains = [
            f"{n}: {'enabled' if ep.cfg else 'not configured'}"
            for n, ep in self.drains.endpoints.items()
        ]
        polling = "on" if self.deployments is not None else "off (no API token)"
        return [(f"Deployments polling: {polling}", []), ("Drains (POST /drains/<name>):", drains)]

    async def aclose(self) -> None:
        if self.deployments is not None:
            await self.deployments.aclose()


def routes(drains: DrainReceiver) -> list[web.RouteDef]:
    out = []
    for path, name in DRAIN_PATHS:
        handler = drains.handler(name)
        out += [web.post(path, handler), web.get(path, handler)]
    return out


def make_app(exporter: VercelExporter) -> web.Application:
    # Rendered off the event loop: drain series can run to tens of thousands of lines, and
    # deliveries in flight must not wait for them (the snapshot is immutable, so that is safe).
    return shared.make_app(exporter, routes=routes(exporter.drains), render_in_thread=True)
