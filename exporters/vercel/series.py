"""Counters and histograms that take a whole batch at once, with a weight per observation.

prometheus_client's own types take one observation per call under a lock each and have no
weight: a 50,000-record drain batch would pay 50,000 lock round-trips, and a sampled drain
(rate 0.1) must count each record ten times. Here a batch is aggregated off the lock into a
plain dict and merged in one step, so a scrape sees all of a batch or none of it.

A scrape never renders these live: `freeze()` copies one into immutable `CounterValues` /
`HistogramValues` (on the event loop, under the series' lock; the copy is kept and handed out
again until the next merge), and those render without any lock, off the loop if need be.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]


def _go(value: float) -> str:
    """Bucket bounds as Prometheus's own clients write them (15 → "15.0")."""
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class CounterValues:
    """A counter family as of one moment: immutable, rendered by `render()` (pure)."""

    name: str
    documentation: str
    labelnames: tuple[str, ...]
    values: tuple[tuple[Labels, float], ...]  # in no particular order

    def render(self) -> Metric:
        fam = CounterMetricFamily(self.name, self.documentation, labels=list(self.labelnames))
        for key, v in sorted(self.values):
            fam.add_metric(list(key), v)
        return fam


@dataclass(frozen=True, slots=True)
class HistogramValues:
    """A histogram family as of one moment. Each row: per-bucket counts (not cumulative), the
    +Inf bucket, sum, count."""

    name: str
    documentation: str
    labelnames: tuple[str, ...]
    bounds: tuple[float, ...]
    rows: tuple[tuple[Labels, tuple[float, ...]], ...]  # in no particular order

    def render(self) -> Metric:
        fam = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labelnames))
        les = [*(_go(b) for b in self.bounds), "+Inf"]
        for key, row in sorted(self.rows):
            acc = 0.0
            buckets = []
            for le, n in zip(les, row[:-2], strict=True):
                acc += n
                buckets.append((le, acc))
            fam.add_metric(list(key), buckets, row[-2])
        return fam


class BatchCounter:
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()
        self._version = 0
        self._frozen = CounterValues(name, documentation, self.labelnames, ())
        self._frozen_at = 0

    def merge(self, delta: dict[Labels, float]) -> None:
        with self._lock:
            values = self._values
            for key, n in delta.items():
                values[key] = values.get(key, 0.0) + n
            self._version += 1

    def init(self, keys: Iterable[Labels]) -> None:
        """Create series at 0 so that the first increase is seen by rate()."""
        with self._lock:
            for key in keys:
                self._values.setdefault(key, 0.0)
            self._version += 1

    def freeze(self) -> CounterValues:
        """An immutable copy of the values now (the same object until the next merge)."""
        with self._lock:
            frozen = self._frozen
            if self._frozen_at != self._version:
                frozen = self._frozen = CounterValues(
                    self.name, self.documentation, self.labelnames, tuple(self._values.items())
                )
                self._frozen_at = self._version
        return frozen

    def collect(self) -> Metric:
        return self.freeze().render()


class HistogramBatch:
    """One batch's observations for a BatchHistogram: counts per bucket index, sum, count."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = list(bounds)
        self.data: dict[Labels, list[float]] = {}

    def observe(self, key: Labels, value: float, weight: float = 1.0) -> None:
        row = self.data.get(key)
        if row is None:
            # [bucket_0 … bucket_n, +Inf bucket, sum, count]
            row = self.data[key] = [0.0] * (len(self._bounds) + 3)
        row[bisect_left(self._bounds, value)] += weight
        row[-2] += value * weight
        row[-1] += weight


class BatchHistogram:
    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = sorted(buckets)
        self._rows: dict[Labels, list[float]] = {}
        self._lock = threading.Lock()
        self._version = 0
        self._frozen = HistogramValues(name, documentation, self.labelnames, tuple(self.bounds), ())
        self._frozen_at = 0

    def batch(self) -> HistogramBatch:
        return HistogramBatch(self.bounds)

    def merge(self, batch: HistogramBatch) -> None:
        with self._lock:
            rows = self._rows
            for key, delta in batch.data.items():
                row = rows.get(key)
                if row is None:
                    rows[key] = list(delta)
                else:
                    for i, d in enumerate(delta):
                        row[i] += d
            self._version += 1

    def freeze(self) -> HistogramValues:
        """An immutable copy of the rows now (the same object until the next merge)."""
        with self._lock:
            frozen = self._frozen
            if self._frozen_at != self._version:
                frozen = self._frozen = HistogramValues(
                    self.name,
                    self.documentation,
                    self.labelnames,
                    tuple(self.bounds),
                    tuple((k, tuple(r)) for k, r in self._rows.items()),
                )
                self._frozen_at = self._version
        return frozen

    def collect(self) -> Metric:
        return self.freeze().render()
