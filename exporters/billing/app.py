"""The billing exporter on the shared exporter app: the job (sources → ledger → figures →
cost_tracking) runs in the background; each scrape copies its state into an immutable Snapshot
that the pure collector (metrics.py) renders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any

import httpx
from aiohttp import web
from prometheus_client.core import Metric

from common import exporter as shared
from exporters.billing import metrics
from exporters.billing.config import BillingConfig
from exporters.billing.cost_tracking import CostTrackingWriter
from exporters.billing.job import BillingJob
from exporters.billing.snapshot import Snapshot
from exporters.billing.sources import make_sources


class BillingExporter(shared.ExporterDefaults):
    namespace = "billing"
    title = "billing"

    def __init__(
        self,
        cfg: BillingConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.cfg = cfg
        writer = (
            CostTrackingWriter(cfg.cost_tracking, clock=clock)
            if cfg.cost_tracking is not None
            else None
        )
        self.job = BillingJob(
            cfg,
            make_sources(cfg, transport=transport, clock=clock),
            writer=writer,
            clock=clock,
            sleep=sleep,
        )

    async def snapshot(self) -> Snapshot:
        return self.job.snapshot()

    def collect(self, snapshot: Snapshot) -> Iterable[Metric]:
        return metrics.collect(snapshot)

    def up(self, snapshot: Snapshot) -> bool:
        return snapshot.up

    def up_help(self) -> str:
        return metrics.UP_HELP

    def background(self) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
        return [self.job.run]

    def landing(self) -> list[tuple[str, list[str]]]:
        return [("Sources:", list(self.job.sources))]

    async def aclose(self) -> None:
        await self.job.aclose()


def make_app(exporter: BillingExporter) -> web.Application:
    return shared.make_app(exporter)
