"""The billing exporter's HTTP side: /metrics serves the last refresh; the refresh (and the
cost_tracking write) runs in the background on its own schedule."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from common.web import healthy, landing_page
from exporters.billing import metrics
from exporters.billing.config import DB_PASSWORD, BillingConfig
from exporters.billing.cost_tracking import CostTrackingWriter
from exporters.billing.poller import BillingPoller, make_sources


class Exporter:
    def __init__(
        self,
        cfg: BillingConfig,
        secrets: dict[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
        self.cost_tracking = (
            CostTrackingWriter(cfg.cost_tracking, secrets.get(DB_PASSWORD))
            if cfg.cost_tracking is not None
            else None
        )
        self.poller = BillingPoller(
            cfg,
            make_sources(cfg, secrets, transport=transport, **kwargs),
            writer=self.write_costs if self.cost_tracking is not None else None,
            **kwargs,
        )

    async def write_costs(self, p: BillingPoller) -> None:
        if self.cost_tracking is not None and p.snapshot is not None:
            await self.cost_tracking.write([p.snapshot.previous, p.snapshot.current])

    def render(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(self))
        return generate_latest(registry)


class _Snapshot(Collector):
    def __init__(self, e: Exporter) -> None:
        self.e = e

    def collect(self) -> Iterable[Metric]:
        ct = self.e.cost_tracking
        yield from metrics.collect(
            self.e.poller, (ct.last_success, ct.errors) if ct is not None else None
        )


EXPORTER = web.AppKey("exporter", Exporter)


async def serve_metrics(request: web.Request) -> web.Response:
    body = request.app[EXPORTER].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.Response:
    return landing_page("billing", [("Sources:", list(request.app[EXPORTER].poller.state))])


def make_app(exporter: Exporter) -> web.Application:
    app = web.Application()
    app[EXPORTER] = exporter

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(app[EXPORTER].poller.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await app[EXPORTER].poller.aclose()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/", index)
    app.router.add_get("/-/healthy", healthy)
    # Ready as soon as it serves: a source being down is a metric (billing_source_up).
    app.router.add_get("/-/ready", healthy)
    return app
