"""GET /api/infrastructure/metrics: the spec's InfrastructureMetricsResponse over the metric
catalogue (api/metric_catalogue.py), read from Prometheus's recording rules.

Who may read is the spec's policy on infrastructure_metrics (admin, or a service_role token):
it is probed under the caller's own transaction (api.db.policy_admits) and a refusal is a 403,
not an empty answer, since the figures come from Prometheus, not from rows RLS could filter.

Periods: [start_time, end_time] is cut into whole intervals from start_time; each point is one
interval, stamped with its END (Prometheus's evaluation time) and computed over the samples in
[end - interval, end] (both ends included, as Prometheus 2 range selectors are). An interval
with no sample has no point. The previous period is the equally long one just before
start_time, cut the same way.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from api import metric_catalogue as cat
from api.alertmanager import rfc3339
from api.bodies import parse_time, query_params
from api.db import METRICS_PROBE, policy_admits
from api.errors import ApiError
from api.prometheus import PrometheusError, PrometheusRefused, Series, finite
from api.state import SERVICES, Services, caller

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PERIOD = 24 * 3600.0
# The default interval is the finest giving at most this many points per metric type.
TARGET_POINTS = 1500
# Prometheus refuses a range query of more than 11,000 points per series.
MAX_POINTS = 11_000
# |change_percent| below this is `stable`.
STABLE_PERCENT = 5.0
# Queries to Prometheus in flight at once for one request (every metric type, two periods).
CONCURRENCY = 4
_AGGREGATIONS: dict[str, cat.Aggregation] = {a: a for a in cat.AGGREGATIONS}
_PARAMS = ("service", "metric_type", "start_time", "end_time", "aggregation", "interval")


@dataclass(frozen=True, slots=True)
class MetricsQuery:
    entries: tuple[cat.Entry, ...]
    start: float
    end: float
    aggregation: cat.Aggregation
    interval: str

    @property
    def step(self) -> int:
        return cat.INTERVALS[self.interval]

    @property
    def buckets(self) -> int:
        return int((self.end - self.start) // self.step)


def _invalid(reason: str) -> ApiError:
    return ApiError("invalid_request", reason)


def _time(name: str, text: str) -> float:
    """An RFC 3339 time with an offset as unix seconds, not before the epoch."""
    seconds = parse_time(name, text).timestamp()
    if seconds < 0:
        raise _invalid(f"{name} must not be before 1970-01-01T00:00:00Z")
    return seconds


def parse_query(request: web.Request, now: float) -> MetricsQuery:
    """The request's filters, checked; every problem is a 422 with its reason."""
    q = query_params(request, _PARAMS)
    service, metric_type = q.get("service"), q.get("metric_type")
    if service is not None and service not in cat.SERVICES:
        raise _invalid(f"service must be one of {', '.join(cat.SERVICES)}")
    if metric_type is not None and metric_type not in cat.METRIC_TYPES:
        raise _invalid(f"metric_type must be one of {', '.join(cat.METRIC_TYPES)}")
    entries = cat.select(service, metric_type)
    if not entries:
        raise _invalid(f"service {service} has no metric_type {metric_type}")
    aggregation = _AGGREGATIONS.get(q.get("aggregation", "avg"))
    if aggregation is None:
        raise _invalid(f"aggregation must be one of {', '.join(cat.AGGREGATIONS)}")
    end = _time("end_time", q["end_time"]) if "end_time" in q else now
    start = _time("start_time", q["start_time"]) if "start_time" in q else end - DEFAULT_PERIOD
    if start >= end:
        raise _invalid("start_time must be before end_time")
    interval = q.get("interval")
    if interval is None:
        # The finest interval giving at most TARGET_POINTS points (else the coarsest).
        interval = next(
            (n for n, s in cat.INTERVALS.items() if (end - start) // s <= TARGET_POINTS), "1d"
        )
    elif interval not in cat.INTERVALS:
        raise _invalid(f"interval must be one of {', '.join(cat.INTERVALS)}")
    query = MetricsQuery(entries, start, end, aggregation, interval)
    if query.buckets < 1:
        raise _invalid(f"the period is shorter than one interval ({interval})")
    if query.buckets > MAX_POINTS:
        raise _invalid(
            f"{query.buckets} points of {interval} between start_time and end_time; Prometheus "
            f"answers at most {MAX_POINTS}: choose a coarser interval or a shorter period"
        )
    return query


async def prometheus_call(services: Services, operation: str, call: Awaitable[T]) -> T:
    """One Prometheus call; a failure is counted and becomes a 503 prometheus_unavailable."""
    try:
        return await call
    except PrometheusError as exc:
        services.metrics.prometheus_errors.labels(operation).inc()
        if isinstance(exc, PrometheusRefused):
            # Our PromQL is wrong (or the rule changed type): a defect, logged loudly.
            log.error("Prometheus refused a query", extra={"error": exc.reason})
        else:
            log.warning("Prometheus unavailable", extra={"error": exc.reason})
        raise ApiError(
            "prometheus_unavailable", f"Prometheus is not answering ({exc.reason}); retry"
        ) from None


async def _gather(calls: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run the calls at most CONCURRENCY at a time; the first failure fails them all."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


def _points(series: list[Series]) -> list[tuple[float, float]]:
    # The PromQL combines a service's series into one (no labels): at most one series.
    return [(t, v) for s in series for t, v in s.points if finite(v) is not None]


def summarise(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"avg_value": 0.0, "max_value": 0.0, "min_value": 0.0, "data_points": 0}
    return {
        "avg_value": math.fsum(values) / len(values),
        "max_value": max(values),
        "min_value": min(values),
        "data_points": len(values),
    }


def compare(now: list[float], previous: list[float]) -> dict[str, float | str]:
    """change_percent = (avg now - avg before) / |avg before| x 100; `stable` under
    STABLE_PERCENT. No data in either period: 0 and stable. A previous average of exactly 0
    gives no ratio: change_percent 0, direction by the sign of the difference."""
    if not now or not previous:
        return {"change_percent": 0.0, "direction": "stable"}
    avg_now = math.fsum(now) / len(now)
    avg_prev = math.fsum(previous) / len(previous)
    if avg_prev == 0:
        diff = avg_now - avg_prev
        return {
            "change_percent": 0.0,
            "direction": "up" if diff > 0 else "down" if diff < 0 else "stable",
        }
    change = (avg_now - avg_prev) / abs(avg_prev) * 100
    if not math.isfinite(change):  # overflow of huge values: no ratio either
        return {"change_percent": 0.0, "direction": "stable"}
    direction = "stable" if abs(change) < STABLE_PERCENT else "up" if change > 0 else "down"
    return {"change_percent": change, "direction": direction}


async def read(services: Services, query: MetricsQuery) -> dict[str, Any]:
    """The response body for a checked query (Prometheus only; the caller is already admitted)."""
    step = query.step
    length = query.end - query.start
    prom = services.prometheus

    def call(entry: cat.Entry, start: float, end: float) -> Callable[[], Awaitable[list[Series]]]:
        promql = cat.promql(entry, query.aggregation, query.interval)
        # The first point is one interval after the period's start: it covers its first interval.
        return lambda: prometheus_call(
            services, "query_range", prom.query_range(promql, start + step, end, step)
        )

    now_calls = [call(e, query.start, query.end) for e in query.entries]
    prev_calls = [call(e, query.start - length, query.start) for e in query.entries]
    answers = await _gather(now_calls + prev_calls)
    current, previous = answers[: len(now_calls)], answers[len(now_calls) :]
    metrics = []
    values: list[float] = []
    for entry, series in zip(query.entries, current, strict=True):
        for at, value in _points(series):
            values.append(value)
            metrics.append(
                {
                    "timestamp": rfc3339(datetime.fromtimestamp(at, UTC)),
                    "service_name": entry.service_name,
                    "metric_type": entry.metric_type,
                    "value": value,
                    "unit": entry.unit,
                }
            )
    before = [v for series in previous for _, v in _points(series)]
    return {
        "metrics": metrics,
        "summary": summarise(values),
        "comparison": {"vs_previous_period": compare(values, before)},
    }


async def get_metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await caller(request)
    query = parse_query(request, time.time())
    async with services.db.as_caller(who) as conn:
        if not await policy_admits(conn, METRICS_PROBE):
            raise ApiError(
                "forbidden",
                "the infrastructure_metrics policy admits admins and service_role only",
            )
    return web.json_response(await read(services, query))
