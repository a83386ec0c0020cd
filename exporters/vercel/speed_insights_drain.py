"""Speed Insights drain records → Core Web Vitals histograms.

Time metrics (LCP, FCP, INP, TTFB, FID) become seconds; CLS is unitless and has its own
histogram. Labels: project, the deployment's environment (`vercelEnvironment`: production,
preview, or unknown — a preview's vitals never mix into production's), the route template as
Vercel gives it (admitted up to a limit, then "other"), device type, and the visitor's
continent; never the raw path or the city.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from exporters.vercel import labels as L
from exporters.vercel.drain_body import DrainError
from exporters.vercel.series import BatchHistogram, HistogramBatch

SCHEMA = "vercel.speed_insights.v1"
# Around the web-vitals "good"/"poor" thresholds: TTFB 0.8/1.8, FCP 1.8/3, LCP 2.5/4, INP 0.2/0.5.
SECONDS_BUCKETS = (0.1, 0.2, 0.5, 0.8, 1.0, 1.8, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0)
CLS_BUCKETS = (0.01, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0)
LABELS = ("project", "environment", "route", "device", "geo")
# A vital above an hour (or a CLS above 100) is no page load: skipped as a bad value, so one
# such record cannot swamp a histogram's sum for good.
MAX_SECONDS = 3600.0
MAX_CLS = 100.0
INT64 = 1 << 63


def _timestamp_ok(value: object) -> bool:
    """An ISO 8601 `timestamp` that exists in UTC. Only an out-of-range one is refused: the
    field is not read, and a format Python does not parse is no reason to drop the batch."""
    if not isinstance(value, str) or len(value) > 64:
        return True
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return True
    if t.tzinfo is None:
        return True
    try:
        t.astimezone(UTC)
    except OverflowError:
        return False
    return True


@dataclass(slots=True)
class VitalsBatch:
    seconds: HistogramBatch
    cls: HistogramBatch
    skipped: dict[str, int] = field(default_factory=dict)
    used: int = 0


class SpeedInsightsDrain:
    name = "speed_insights"

    def __init__(self, projects: L.Projects, routes: L.Routes, value_scale: float) -> None:
        self.projects = projects
        self.routes = routes
        self.scale = value_scale
        self.seconds = BatchHistogram(
            "vercel_web_vital_seconds",
            "Core Web Vitals measured in visitors' browsers (Speed Insights drain), by metric "
            "(LCP, FCP, INP, TTFB, FID), scaled by 1/sample rate. environment is the deployment's "
            "(production, preview, unknown); geo is the visitor's continent.",
            ("metric", *LABELS),
            SECONDS_BUCKETS,
        )
        self.cls = BatchHistogram(
            "vercel_web_vital_cls",
            "Cumulative Layout Shift (unitless) from the Speed Insights drain, scaled by 1/sample rate.",
            LABELS,
            CLS_BUCKETS,
        )

    def aggregate(self, records: Sequence[dict[str, Any]], weight: float) -> VitalsBatch:
        """Count a batch (apply merges it); DrainError, before any route is admitted, if a
        record holds a number or a time out of any range."""
        for rec in records:
            if not _timestamp_ok(rec.get("timestamp")):
                raise DrainError(400, "out_of_range", "a record's timestamp is not a UTC time")
            value = rec.get("value")
            if type(value) is int and not -INT64 <= value < INT64:
                raise DrainError(400, "out_of_range", "a record's value overflows 64 bits")
        b = VitalsBatch(self.seconds.batch(), self.cls.batch())
        skipped = b.skipped
        for rec in records:
            schema = rec.get("schema")
            if schema is not None and schema != SCHEMA:
                skipped["schema"] = skipped.get("schema", 0) + 1
                continue
            metric = rec.get("metricType")
            value = rec.get("value")
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                skipped["bad_value"] = skipped.get("bad_value", 0) + 1
                continue
            project = self.projects(rec.get("projectId"))
            labels = (
                project,
                L.environment(rec.get("vercelEnvironment")),
                self.routes(project, rec.get("route")),
                L.one_of(rec.get("deviceType"), L.DEVICES, "unknown"),
                L.geo(rec.get("country")),
            )
            if metric == "CLS":
                if value > MAX_CLS:
                    skipped["bad_value"] = skipped.get("bad_value", 0) + 1
                    continue
                b.cls.observe(labels, float(value), weight)
            elif isinstance(metric, str) and metric in L.VITALS_SECONDS:
                seconds = value * self.scale
                if seconds > MAX_SECONDS:
                    skipped["bad_value"] = skipped.get("bad_value", 0) + 1
                    continue
                b.seconds.observe((metric, *labels), seconds, weight)
            else:
                skipped["metric"] = skipped.get("metric", 0) + 1
                continue
            b.used += 1
        return b

    def apply(self, batch: VitalsBatch) -> None:
        self.seconds.merge(batch.seconds)
        self.cls.merge(batch.cls)

    def collectors(self) -> list[BatchHistogram]:
        return [self.seconds, self.cls]
