"""The background job: each source refreshed by its own `common.refresh.RefreshLoop`, its
delivery folded into the ledger; then the figures /metrics serves are recomputed and (a step of
the same job) the months are written to cost_tracking.

Each source fails alone and is retried alone: after a failure at 1, 2, 4… minutes (up to the
refresh interval), or when the vendor's rate-limit window opens, while the others keep their
schedule. Its previous days stay in the ledger (costs already reported do not go stale; they are
history, so the loops never drop them), `billing_source_up` says it failed, and the
source-stopped alert fires once its newest data is older than the source's `max_data_age`.

The first round refreshes every source together and publishes once (as a scrape should not see
half the providers); afterwards each source publishes after each of its refreshes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any

from common.refresh import RefreshLoop
from exporters.billing import figures
from exporters.billing.config import BillingConfig
from exporters.billing.cost_tracking import CostTrackingWriter
from exporters.billing.focus import Batch
from exporters.billing.ledger import Ledger
from exporters.billing.recommendations import Recommendation, recommend
from exporters.billing.snapshot import Snapshot, SourceView
from exporters.billing.sources import ERROR_REASONS, FETCH_ERRORS, Source

# Recommendations exported (the largest savings first): each is a series, so a bounded number.
MAX_RECOMMENDATIONS = 10

log = logging.getLogger("exporters.billing")

# After a failed refresh a source is tried again sooner: 1, 2, 4… minutes, up to the interval
# (an hourly schedule would otherwise keep a short outage's gap for an hour).
FIRST_RETRY = 60.0


@dataclass(frozen=True, slots=True)
class Tally:
    """What a source has delivered since start (counters): its refresh loop's snapshot."""

    rows: int = 0
    rejected: Mapping[str, int] = field(default_factory=dict)
    newest_data: float | None = None

    def add(self, b: Batch) -> Tally:
        rejected = dict(self.rejected)
        for reason, n in b.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + n
        newest = self.newest_data
        if b.newest is not None:
            newest = max(newest or 0.0, b.newest.timestamp())
        return Tally(self.rows + b.rows, MappingProxyType(rejected), newest)


class BillingJob:
    def __init__(
        self,
        cfg: BillingConfig,
        sources: list[Source],
        *,
        writer: CostTrackingWriter | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.cfg = cfg
        self.sources = {s.name: s for s in sources}
        self.writer = writer
        self.clock = clock
        self.sleep = sleep
        self.ledger = Ledger()
        self.max_data_age = {s.name: s.max_data_age for s in cfg.sources()}
        self.loops: dict[str, RefreshLoop[Tally]] = {
            s.name: RefreshLoop(
                s.name,
                self._refresher(s),
                interval=cfg.refresh_interval,
                # Delivered costs are history: a source's tally is never dropped as stale.
                stale_after=math.inf,
                first_backoff=FIRST_RETRY,
                max_backoff=cfg.refresh_interval,
                reasons=ERROR_REASONS,
                clock=clock,
                sleep=sleep,
            )
            for s in sources
        }
        self.figures: figures.Figures | None = None
        # The top MAX_RECOMMENDATIONS of the current month, recomputed with the figures.
        self.recommendations: tuple[Recommendation, ...] = ()
        self._write_lock = asyncio.Lock()
        self._published = 0  # generation of the figures
        self._written = 0  # generation last handed to cost_tracking

    # --- time ----------------------------------------------------------------------------

    def today(self) -> date:
        return datetime.fromtimestamp(self.clock(), UTC).date()

    def window(self) -> tuple[date, date]:
        """[first day of the oldest month kept, tomorrow): whole months, restated each time."""
        today = self.today()
        first = figures.month_start(today)
        for _ in range(self.cfg.months_back):
            first = figures.previous_month(first)
        # The spike baseline and the run rate look back up to 15 days before today.
        first = min(first, today - timedelta(days=figures.BASELINE_DAYS + 1))
        return first, today + timedelta(days=1)

    # --- one source ----------------------------------------------------------------------

    def _refresher(self, source: Source) -> Callable[[], Awaitable[Tally]]:
        async def refresh() -> Tally:
            return await self._refresh(source)

        return refresh

    async def _refresh(self, source: Source) -> Tally:
        """Fetch the source's window and fold it into the ledger. Raises what the refresh loop
        counts: UpstreamError (its reason), OSError (io), ValueError (malformed)."""
        first, end = self.window()
        try:
            delivery = await source.fetch(first, end)
        except FETCH_ERRORS:
            raise
        except Exception as exc:  # a bug must not stop the loop; the source shows as down
            log.exception("billing source crashed", extra={"source": source.name})
            raise ValueError(f"unexpected {type(exc).__name__}") from exc
        b = delivery.batch
        self.ledger.apply(source.name, delivery.covered, b.days)
        if b.rejected:
            log.warning(
                "billing rows rejected",
                extra={
                    "source": source.name,
                    "rejected": dict(b.rejected),
                    "first": b.first_errors,
                },
            )
        return (self.loops[source.name].current() or Tally()).add(b)

    async def refresh_source(self, name: str) -> bool:
        """One refresh of one source (no publish); True if it succeeded."""
        loop = self.loops[name]
        await loop.refresh_once()
        return loop.failures_in_a_row == 0

    # --- every source --------------------------------------------------------------------

    async def _round(self) -> dict[str, float]:
        names = list(self.loops)
        waits = await asyncio.gather(*(self.loops[n].refresh_once() for n in names))
        await self.publish()
        return dict(zip(names, waits, strict=True))

    async def refresh(self) -> bool:
        """Every source once (together), then one publish; True if every source succeeded."""
        await self._round()
        return self.up()

    async def run(self) -> None:
        """The background task: a first round, then each source on its own schedule."""
        waits = await self._round()
        await asyncio.gather(*(self._follow(name, wait) for name, wait in waits.items()))

    async def _follow(self, name: str, wait: float) -> None:
        loop = self.loops[name]
        while True:
            await self.sleep(max(wait, 0.0))
            wait = await loop.refresh_once()
            await self.publish()

    # --- figures and cost_tracking -------------------------------------------------------

    async def publish(self) -> None:
        """Recompute the figures from the ledger, then write them to cost_tracking."""
        try:
            self.ledger.prune(self.window()[0])
            self.figures = figures.compute(self.ledger, self.today(), self.cfg.top_services)
            found = recommend(self.figures.current, self.figures.previous, self.cfg.recommendations)
            self.recommendations = tuple(found[:MAX_RECOMMENDATIONS])
        except Exception:  # a bug here must not stop the job; the last figures stay
            log.exception("billing figures failed")
            return
        self._published += 1
        if self.writer is not None:
            await self._write(self.writer)

    async def _write(self, writer: CostTrackingWriter) -> None:
        # One write at a time; sources finishing together are written once, with the newest
        # figures (a write that failed is not retried until the next publish).
        async with self._write_lock:
            if self._written == self._published or self.figures is None:
                return
            self._written, figs = self._published, self.figures
            try:
                await writer.write([figs.previous, figs.current])
            except Exception:
                log.exception("cost_tracking write crashed")

    # --- what a scrape sees --------------------------------------------------------------

    def up(self) -> bool:
        return self.snapshot().up

    def snapshot(self) -> Snapshot:
        """Copies of the sources' state and the current figures (call on the event loop)."""
        return Snapshot(
            monthly_budget_usd=self.cfg.monthly_budget_usd,
            sources=tuple(self._view(name) for name in sorted(self.loops)),
            figures=self.figures,
            recommendations=self.recommendations,
            cost_tracking=self.writer.view() if self.writer is not None else None,
        )

    def _view(self, name: str) -> SourceView:
        loop = self.loops[name]
        tally = loop.current() or Tally()
        return SourceView(
            name=name,
            max_data_age=self.max_data_age[name],
            # The last finished refresh succeeded (one in flight does not count yet).
            up=loop.last_success is not None and loop.failures_in_a_row == 0,
            last_success=loop.last_success,
            refresh_seconds=loop.last_duration,
            newest_data=tally.newest_data,
            rows=tally.rows,
            requests=self.sources[name].requests(),
            rejected=tally.rejected,
            errors=MappingProxyType(dict(loop.errors)),
        )

    async def aclose(self) -> None:
        for s in self.sources.values():
            await s.aclose()
