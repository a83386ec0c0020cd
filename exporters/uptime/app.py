"""The uptime exporter on the shared exporter app: the prober (adapter) keeps per-target state,
each scrape copies it into an immutable snapshot, and the pure collector renders that."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client.core import Metric

from common import exporter as shared
from exporters.uptime import collector
from exporters.uptime.collector import UptimeSnapshot
from exporters.uptime.config import UptimeConfig
from exporters.uptime.scheduler import Prober


class UptimeExporter(shared.ExporterDefaults):
    namespace = "uptime"
    title = "uptime"

    def __init__(self, cfg: UptimeConfig) -> None:
        self.cfg = cfg
        self.prober = Prober(cfg)

    async def snapshot(self) -> UptimeSnapshot:
        p = self.prober
        return collector.snapshot_of(p.states, p.stats, self.cfg, p.healthy())

    def collect(self, snapshot: UptimeSnapshot) -> Iterable[Metric]:
        return collector.collect(snapshot)

    def up(self, snapshot: UptimeSnapshot) -> bool:
        return collector.up(snapshot)

    def up_help(self) -> str:
        return collector.UP_HELP

    def background(self) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
        return [self._run_prober]

    async def _run_prober(self) -> None:
        self.prober.start()
        try:
            await self.prober.wait()
        finally:
            await self.prober.stop()

    def ready(self) -> bool:
        return self.prober.healthy()

    def landing(self) -> list[tuple[str, list[str]]]:
        rows = [
            f"{n}: "
            + (
                "up"
                if s.last and s.last.success
                else ("down: " + str(s.last.reason) if s.last else "pending")
            )
            for n, s in self.prober.states.items()
        ]
        return [("Targets:", rows)]

    async def aclose(self) -> None:
        await self.prober.stop()


def make_app(cfg: UptimeConfig) -> web.Application:
    # Rendered off the event loop: a large render must not stall probes in flight, whose phase
    # timings would then include our own pause (the snapshot is immutable, so that is safe).
    return shared.make_app(UptimeExporter(cfg), render_in_thread=True)
