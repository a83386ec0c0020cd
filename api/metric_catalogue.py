"""The metric types GET /api/infrastructure/metrics answers: each one a recording rule of
alert_rules/generated/*.rules.yml, read the same fixed way. Callers name a service and a metric
type; the PromQL is built here from this table and never from anything the caller sent beyond
a choice among these entries, an aggregation and an interval (all closed sets).

How one point is computed (docs/operator-api.md, "Infrastructure metrics", says the same):

1. Each series of the rule (one label set: a project, region, target, statement, …) is
   aggregated over the interval ending at the point's time: avg_over_time, sum_over_time,
   max_over_time, min_over_time or quantile_over_time(0.95|0.99).
2. The service's series are combined into one value per point with the entry's `combine`:
   `sum` for additive figures (request rates, costs), `max` for the worst series of a latency
   or an error ratio (the slowest region, the worst project), `min` for the worst series of a
   figure where lower is worse (availability, cache hit ratio).
3. The value is scaled to the entry's unit (seconds → ms, ratio → percent).

`complement` entries report 1 - the rule (availability from an error ratio); their step 1
mirrors the aggregation so that the answer is exact: max of (1 - x) is 1 - min of x, the
p95 of (1 - x) is 1 - the p05 of x, the sum of (1 - x) is count - sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Aggregation = Literal["avg", "sum", "max", "min", "p95", "p99"]
AGGREGATIONS: tuple[Aggregation, ...] = ("avg", "sum", "max", "min", "p95", "p99")
# interval name → seconds; the query_range step and the width of each point's window.
INTERVALS = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
Combine = Literal["sum", "max", "min"]


@dataclass(frozen=True, slots=True)
class Entry:
    metric_type: str
    service_name: str
    # The recording rule read (its name as alert_rules/generated defines it).
    rule: str
    unit: str
    combine: Combine
    # Fixed label matchers on the rule (never the caller's): production only where the rule
    # keeps environments apart.
    matchers: str = ""
    scale: float = 1.0
    complement: bool = False
    description: str = ""

    @property
    def selector(self) -> str:
        return f"{self.rule}{{{self.matchers}}}" if self.matchers else self.rule


_PROD = 'environment="production"'

CATALOGUE: tuple[Entry, ...] = (
    # --- vercel: production traffic (the SLO rules) and request latency --------------------
    Entry(
        "request_rate",
        "vercel",
        "project:vercel_requests:rate5m",
        "requests_per_second",
        "sum",
        description="production requests per second, all projects (5-minute rate)",
    ),
    Entry(
        "error_rate",
        "vercel",
        "project:vercel_request_errors:ratio_rate5m",
        "percent",
        "max",
        scale=100.0,
        description="share of production requests answered 5xx or not at all, worst project",
    ),
    Entry(
        "response_time_p50",
        "vercel",
        "project_kind:vercel_request_duration_seconds:p50_rate5m",
        "ms",
        "max",
        matchers=_PROD,
        scale=1000.0,
        description="median production request duration, slowest project and route kind",
    ),
    Entry(
        "response_time_p95",
        "vercel",
        "project_kind:vercel_request_duration_seconds:p95_rate5m",
        "ms",
        "max",
        matchers=_PROD,
        scale=1000.0,
        description="95th percentile production request duration, slowest project and kind",
    ),
    Entry(
        "response_time_p99",
        "vercel",
        "project_kind:vercel_request_duration_seconds:p99_rate5m",
        "ms",
        "max",
        matchers=_PROD,
        scale=1000.0,
        description="99th percentile production request duration, slowest project and kind",
    ),
    # --- supabase: the database ----------------------------------------------------------
    Entry(
        "db_connection_utilization",
        "supabase",
        "project:supabase_db_connections:ratio",
        "percent",
        "max",
        scale=100.0,
        description="connections in use / max_connections, fullest project",
    ),
    Entry(
        "db_cache_hit_rate",
        "supabase",
        "project:supabase_db_cache_hit:ratio_rate5m",
        "percent",
        "min",
        scale=100.0,
        description="buffer cache hits / block reads, worst project (5-minute rate)",
    ),
    Entry(
        "db_statement_mean_time",
        "supabase",
        "project_queryid:supabase_db_statement_mean_seconds:rate2m",
        "ms",
        "max",
        scale=1000.0,
        description="mean time per call of the slowest listed statement (2-minute rate)",
    ),
    Entry(
        "db_statement_rate",
        "supabase",
        "project_queryid:supabase_db_statement_calls:rate2m",
        "calls_per_second",
        "sum",
        description="calls per second of the listed statements, all projects",
    ),
    # --- uptime: the probes ----------------------------------------------------------------
    Entry(
        "response_time",
        "uptime",
        "region:uptime_probe_duration_seconds:avg",
        "ms",
        "max",
        scale=1000.0,
        description="mean probe duration of the slowest probing region",
    ),
    Entry(
        "availability",
        "uptime",
        "target:uptime_probe_errors:ratio_rate5m",
        "percent",
        "min",
        scale=100.0,
        complement=True,
        description="share of successful probes (seen from the best region), worst target",
    ),
    # --- billing: the billing exporter's figures -----------------------------------------
    Entry(
        "month_to_date_cost",
        "billing",
        "job:billing_month_to_date_cost_usd:sum",
        "usd",
        "sum",
        description="this UTC month's billed cost so far, all providers",
    ),
    Entry(
        "projected_monthly_cost",
        "billing",
        "job:billing_month_end_projected_cost_usd:sum",
        "usd",
        "sum",
        description="projected month-end billed cost, all providers",
    ),
    Entry(
        "budget_used",
        "billing",
        "job:billing_budget_used:ratio",
        "percent",
        "max",
        scale=100.0,
        description="month-to-date cost / monthly budget",
    ),
)

SERVICES: tuple[str, ...] = tuple(dict.fromkeys(e.service_name for e in CATALOGUE))
METRIC_TYPES: tuple[str, ...] = tuple(dict.fromkeys(e.metric_type for e in CATALOGUE))


def select(service: str | None, metric_type: str | None) -> tuple[Entry, ...]:
    """The entries matching both filters (None: any), in catalogue order."""
    return tuple(
        e
        for e in CATALOGUE
        if (service is None or e.service_name == service)
        and (metric_type is None or e.metric_type == metric_type)
    )


# aggregation → (function over the rule, function over the complement's rule, its argument).
_OVER_TIME: dict[Aggregation, tuple[str, str, str]] = {
    "avg": ("avg_over_time", "avg_over_time", ""),
    "sum": ("sum_over_time", "sum_over_time", ""),
    "max": ("max_over_time", "min_over_time", ""),
    "min": ("min_over_time", "max_over_time", ""),
    "p95": ("quantile_over_time", "quantile_over_time", "0.95"),
    "p99": ("quantile_over_time", "quantile_over_time", "0.99"),
}
_COMPLEMENT_QUANTILE = {"0.95": "0.05", "0.99": "0.01"}


def promql(entry: Entry, aggregation: Aggregation, interval: str) -> str:
    """The one-series PromQL of `entry` aggregated over `interval` windows (module docstring)."""
    window = f"{entry.selector}[{interval}]"
    fn, complement_fn, arg = _OVER_TIME[aggregation]
    if not entry.complement:
        per_series = f"{fn}({arg + ', ' if arg else ''}{window})"
    elif aggregation == "sum":
        per_series = f"(count_over_time({window}) - sum_over_time({window}))"
    else:
        carg = _COMPLEMENT_QUANTILE.get(arg, "")
        per_series = f"(1 - {complement_fn}({carg + ', ' if carg else ''}{window}))"
    combined = f"{entry.combine}({per_series})"
    return combined if entry.scale == 1.0 else f"{entry.scale:g} * {combined}"
