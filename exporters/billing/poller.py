"""The background job: refresh every source, fold deliveries into the ledger, recompute the
figures /metrics serves, and write the month's rows to cost_tracking.

Each source fails alone: its previous days stay in the ledger (costs already reported do not
go stale; they are history), `billing_source_up` says it failed, and the source-stopped alert
fires once its newest data is older than the source's `max_data_age`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from exporters.billing import figures
from exporters.billing.config import BillingConfig
from exporters.billing.ledger import Ledger
from exporters.billing.sources import (
    Delivery,
    FolderSource,
    OpenAICostsSource,
    Source,
    SourceError,
    VercelChargesSource,
)

log = logging.getLogger("exporters.billing")


@dataclass(slots=True)
class SourceState:
    name: str
    max_data_age: float
    last_success: float | None = None
    last_attempt_ok: bool = False
    refresh_seconds: float | None = None
    newest_data: float | None = None
    rows: int = 0
    requests: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(slots=True)
class Snapshot:
    """What /metrics serves: computed once per refresh, read by every scrape."""

    today: date
    current: figures.Month
    previous: figures.Month
    spikes: dict[str, figures.Spike]
    services: dict[tuple[str, str], Decimal]


def make_sources(
    cfg: BillingConfig,
    secrets: dict[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> list[Source]:
    tag = cfg.recommendations.environment_tag
    out: list[Source] = []
    if cfg.vercel is not None:
        out.append(
            VercelChargesSource(
                cfg.vercel,
                secrets[cfg.vercel.name],
                currency=cfg.currency,
                environment_tag=tag,
                transport=transport,
                clock=clock,
            )
        )
    if cfg.openai is not None:
        out.append(
            OpenAICostsSource(
                cfg.openai,
                secrets[cfg.openai.name],
                currency=cfg.currency,
                transport=transport,
                clock=clock,
            )
        )
    out.extend(FolderSource(f, cfg.currency, tag) for f in cfg.folders)
    return out


class BillingPoller:
    def __init__(
        self,
        cfg: BillingConfig,
        sources: list[Source],
        *,
        clock: Callable[[], float] = time.time,
        writer: Callable[[BillingPoller], Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.sources = sources
        self.clock = clock
        self.writer = writer
        self.ledger = Ledger()
        by_name = {s.name: s for s in cfg.sources()}
        self.state = {s.name: SourceState(s.name, by_name[s.name].max_data_age) for s in sources}
        self.snapshot: Snapshot | None = None

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

    async def refresh_source(self, source: Source) -> bool:
        st = self.state[source.name]
        first, end = self.window()
        started = time.perf_counter()
        try:
            delivery: Delivery = await source.fetch(first, end)
        except SourceError as exc:
            st.errors[exc.reason] += 1
            st.last_attempt_ok = False
            log.warning(
                "billing source failed",
                extra={"source": source.name, "reason": exc.reason, "detail": exc.detail},
            )
            return False
        finally:
            st.refresh_seconds = time.perf_counter() - started
        b = delivery.batch
        self.ledger.apply(source.name, delivery.covered, b.days)
        st.rows += b.rows
        st.requests += delivery.requests
        st.rejected.update(b.rejected)
        if b.rejected:
            log.warning(
                "billing rows rejected",
                extra={
                    "source": source.name,
                    "rejected": dict(b.rejected),
                    "first": b.first_errors,
                },
            )
        if b.newest is not None:
            newest = b.newest.timestamp()
            st.newest_data = max(st.newest_data or 0.0, newest)
        st.last_success = self.clock()
        st.last_attempt_ok = True
        return True

    async def refresh(self) -> bool:
        results = await asyncio.gather(*(self.refresh_source(s) for s in self.sources))
        self.ledger.prune(self.window()[0])
        self.recompute()
        if self.writer is not None:
            await self.writer(self)
        return all(results)

    def recompute(self) -> None:
        today = self.today()
        start = figures.month_start(today)
        current = figures.month(self.ledger, start, today)
        self.snapshot = Snapshot(
            today=today,
            current=current,
            previous=figures.month(self.ledger, figures.previous_month(start), today),
            spikes=figures.last_day_vs_baseline(self.ledger, today),
            services=figures.top_services(current, self.cfg.top_services),
        )

    async def run(self) -> None:
        # After a failed refresh, try again sooner (1, 2, 4… minutes, up to the interval): an
        # hourly schedule would otherwise keep a short outage's gap for an hour.
        retry = 60.0
        while True:
            ok = False
            try:
                ok = await self.refresh()
            except Exception:  # a bug here must not stop /metrics
                log.exception("billing refresh crashed")
            if ok:
                retry = 60.0
                await asyncio.sleep(self.cfg.refresh_interval)
            else:
                await asyncio.sleep(min(retry, self.cfg.refresh_interval))
                retry = min(retry * 2, self.cfg.refresh_interval)

    def up(self) -> bool:
        return all(s.last_attempt_ok for s in self.state.values())

    async def aclose(self) -> None:
        for s in self.sources:
            await s.aclose()
