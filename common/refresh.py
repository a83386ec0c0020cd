"""One background refresh loop for every rate-limited source an exporter polls.

The loop calls `refresh()` every `interval`, keeps the last good snapshot (immutable: the
collector renders it while the loop may already be building the next one), backs off after a
failure (doubling up to `max_backoff`, or until the vendor's own `retry_at`), and drops the
snapshot once it is older than `stale_after`, so /metrics never serves stale data as current.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.upstream import REASONS, UpstreamError

S = TypeVar("S")
log = logging.getLogger(__name__)


class RefreshLoop(Generic[S]):
    def __init__(
        self,
        name: str,
        refresh: Callable[[], Awaitable[S]],
        *,
        interval: float,
        stale_after: float,
        first_backoff: float = 60.0,
        max_backoff: float = 900.0,
        reasons: tuple[str, ...] = REASONS,
        errors_metric: bool = True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.name = name
        self._refresh = refresh
        self.interval = interval
        self.stale_after = stale_after
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.reasons = reasons
        # False where the client's own error counter already counts the same failures.
        self.errors_metric = errors_metric
        self.clock = clock
        self.sleep = sleep
        self._snapshot: S | None = None
        self.last_success: float | None = None
        self.last_duration: float | None = None
        self.failures_in_a_row = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.refreshes = 0

    def current(self) -> S | None:
        """The last good snapshot, or None when there is none or it is stale."""
        if self._snapshot is None or not self.fresh():
            return None
        return self._snapshot

    def fresh(self) -> bool:
        return (
            self.last_success is not None and self.clock() - self.last_success <= self.stale_after
        )

    async def refresh_once(self) -> float:
        """One refresh; how long to wait before the next."""
        start = time.perf_counter()
        self.refreshes += 1
        try:
            snapshot = await self._refresh()
        except UpstreamError as exc:
            return self._failed(exc.reason, exc.detail, exc.retry_at, start)
        except (OSError, ValueError) as exc:
            # A source that is not HTTP (a folder, a database) fails with these.
            return self._failed(
                "io" if isinstance(exc, OSError) else "malformed", str(exc), None, start
            )
        self._snapshot = snapshot
        self.last_success = self.clock()
        self.last_duration = time.perf_counter() - start
        self.failures_in_a_row = 0
        return self.interval

    def _failed(self, reason: str, detail: str, retry_at: float | None, start: float) -> float:
        self.last_duration = time.perf_counter() - start
        self.errors[reason if reason in self.reasons else "other"] += 1
        self.failures_in_a_row += 1
        log.warning(
            "refresh failed", extra={"source": self.name, "reason": reason, "detail": detail}
        )
        # Sooner than the next regular refresh, later each time; never before the vendor said.
        backoff: float = min(
            self.first_backoff * 2.0 ** (self.failures_in_a_row - 1),
            self.max_backoff,
            self.interval,
        )
        if retry_at is not None:
            backoff = max(backoff, retry_at - self.clock())
        return backoff

    async def run(self) -> None:
        while True:
            wait = await self.refresh_once()
            await self.sleep(max(wait, 0.0))

    def metrics(self, prefix: str, what: str) -> Iterable[Metric]:
        """`<prefix>_up`, `<prefix>_last_success_timestamp_seconds`,
        `<prefix>_refresh_duration_seconds` and `<prefix>_errors_total{reason}`."""
        yield GaugeMetricFamily(
            f"{prefix}_up",
            f"1 if {what} was refreshed within stale_after (its data is served), else 0.",
            value=1.0 if self.fresh() else 0.0,
        )
        if self.last_success is not None:
            yield GaugeMetricFamily(
                f"{prefix}_last_success_timestamp_seconds",
                f"When {what} was last refreshed successfully.",
                value=self.last_success,
            )
        if self.last_duration is not None:
            yield GaugeMetricFamily(
                f"{prefix}_refresh_duration_seconds",
                f"How long the last refresh of {what} took.",
                value=self.last_duration,
            )
        if not self.errors_metric:
            return
        errors = CounterMetricFamily(
            f"{prefix}_refresh_errors", f"Failed refreshes of {what}, by reason.", labels=["reason"]
        )
        for reason in (*self.reasons, "other"):
            errors.add_metric([reason], self.errors.get(reason, 0))
        yield errors
