"""GET /api/infrastructure/costs: the spec's CostAnalysisResponse, from the cost_tracking rows
the billing exporter writes (read as the caller, under the spec's "Finance team access to
costs" policy) and the exporters' figures in Prometheus (Vercel requests, 30-day active users,
database size, the billing exporter's recommendations).

The month is the current UTC calendar month; "last month" the one before. Every figure is
defined in docs/operator-api.md ("Cost analysis"); a ratio whose divisor is 0 (or absent) is 0,
never NaN or infinite, so every field is always a number, as the spec types them.

A caller the policy refuses gets 403, not an all-zero report: the rows are invisible to them,
and zeros would read as "nothing was spent".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from api.bodies import no_query
from api.db import COSTS_PROBE, policy_admits
from api.errors import ApiError
from api.infra_metrics import prometheus_call
from api.prometheus import Sample, finite
from api.state import SERVICES, Services, caller
from common.months import month_start, previous_month

# The recording rule's evaluation interval (alert_rules/generated/slo.rules.yml, group
# vercel-slo-ratios, 30s): a sum of its per-second rate samples times 30 is a request count,
# as the rules' own project:vercel_requests:increase1d is.
RULE_INTERVAL_SECONDS = 30
BYTES_PER_GB = 1e9

_ROWS = """
SELECT billing_period_start, service_provider, service_category, usage_quantity, usage_unit,
       cost_usd, projected_monthly_cost
FROM cost_tracking
WHERE billing_period_start IN (%(current)s, %(previous)s)
  AND billing_period_end = (billing_period_start + INTERVAL '1 month')::date
ORDER BY billing_period_start, service_provider, service_category
"""
_ACTIVE_USERS = 'sum(supabase_active_users{job="supabase",window="30d"})'
_STORAGE_BYTES = 'sum(max by (project) (supabase_db_size_bytes{job="supabase"}))'
_RECOMMENDATIONS = (
    "max by (rule, provider, service, effort_level) (billing_recommendation_potential_savings_usd)"
)
EFFORT = ("low", "medium", "high")
# What each exported recommendation rule advises (exporters/billing/recommendations.py says
# the same with the month's figures in it; a label cannot carry those).
ADVICE = {
    "preview_share": (
        "Preview deployments exceed the configured share of {provider} usage: build previews "
        "only for branches with open pull requests, skip unchanged projects (ignored build "
        "step), shorten preview retention."
    ),
    "price_growth": (
        "{service} cost grew faster than its consumption (the unit price rose): check the "
        "plan's included allowance and tier, and whether a commitment or spend cap is cheaper."
    ),
    "idle_addon": (
        "{service} is paid for but reports no consumption this month: remove the add-on or "
        "downgrade it if nothing depends on it."
    ),
}


@dataclass(frozen=True, slots=True)
class Row:
    provider: str
    category: str
    quantity: Decimal
    unit: str
    cost: Decimal
    projected: Decimal | None


def ratio(a: float, b: float) -> float:
    """a / b, or 0 when b is 0 or the result is not finite."""
    if b == 0:
        return 0.0
    out = a / b
    return out if math.isfinite(out) else 0.0


def _number(d: Decimal) -> float:
    value = float(d)
    return value if math.isfinite(value) else 0.0


def projected(r: Row) -> Decimal:
    # The exporter's projection for the row; a row without one (a complete month, or a row
    # written by hand) counts at its cost so far.
    return r.projected if r.projected is not None else r.cost


def usage_growth(current: list[Row], previous: list[Row]) -> float:
    """Month-over-month usage at last month's prices (a Laspeyres quantity index), percent:
    sum(cost_prev x q_now / q_prev) / sum(cost_prev) - 1 over the (provider, category) rows
    present in both months with the same unit and a positive quantity last month. q_now is the
    projected month's quantity: this month's quantity x the row's projected / cost."""
    before = {(r.provider, r.category): r for r in previous}
    weighted = base = 0.0
    for r in current:
        p = before.get((r.provider, r.category))
        if p is None or p.unit != r.unit or p.quantity <= 0 or p.cost <= 0:
            continue
        scale = ratio(_number(projected(r)), _number(r.cost)) if r.cost > 0 else 1.0
        weighted += _number(p.cost) * _number(r.quantity) * scale / _number(p.quantity)
        base += _number(p.cost)
    return ratio(weighted, base) * 100 - 100 if base > 0 else 0.0


def _scalar(samples: list[Sample]) -> float:
    return sum(v for s in samples if (v := finite(s.value)) is not None)


def recommendations(samples: list[Sample]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in samples:
        saving = finite(s.value)
        rule, provider = s.labels.get("rule", ""), s.labels.get("provider", "")
        service, effort = s.labels.get("service", ""), s.labels.get("effort_level", "")
        if saving is None or rule not in ADVICE or effort not in EFFORT:
            continue  # a series this version does not know how to describe
        out.append(
            {
                "service": f"{provider}: {service}",
                "recommendation": ADVICE[rule].format(provider=provider, service=service),
                "potential_savings_usd": saving,
                "effort_level": effort,
            }
        )
    out.sort(key=lambda r: (-r["potential_savings_usd"], r["service"]))
    return out


async def _prometheus(services: Services, now: float, start: date) -> dict[str, Any]:
    prom = services.prometheus
    month_seconds = max(1, int(now - datetime(start.year, start.month, 1, tzinfo=UTC).timestamp()))
    requests_q = (
        f"sum(sum_over_time(project:vercel_requests:rate5m[{month_seconds}s])) "
        f"* {RULE_INTERVAL_SECONDS}"
    )

    async def q(promql: str) -> list[Sample]:
        return await prometheus_call(services, "query", prom.query(promql, now))

    # One after the other: four short instant queries, and the first failure stops the rest.
    return {
        "requests": _scalar(await q(requests_q)),
        "active_users": _scalar(await q(_ACTIVE_USERS)),
        "storage_gb": _scalar(await q(_STORAGE_BYTES)) / BYTES_PER_GB,
        "recommendations": recommendations(await q(_RECOMMENDATIONS)),
    }


def report(rows: list[tuple[Any, ...]], current: date, figures: dict[str, Any]) -> dict[str, Any]:
    by_month: dict[date, list[Row]] = {}
    for start, provider, category, qty, unit, cost, proj in rows:
        by_month.setdefault(start, []).append(Row(provider, category, qty, unit, cost, proj))
    now_rows = by_month.get(current, [])
    prev_rows = by_month.get(previous_month(current), [])
    total = _number(sum((r.cost for r in now_rows), Decimal(0)))
    projection = _number(sum((projected(r) for r in now_rows), Decimal(0)))
    last_month = _number(sum((r.cost for r in prev_rows), Decimal(0)))
    return {
        "current_month": {
            "total_cost_usd": total,
            "projected_monthly_cost_usd": projection,
            "cost_breakdown": [
                {
                    "service_provider": r.provider,
                    "service_category": r.category,
                    "cost_usd": _number(r.cost),
                    "usage_quantity": _number(r.quantity),
                    "usage_unit": r.unit,
                    "cost_per_unit": ratio(_number(r.cost), _number(r.quantity)),
                }
                for r in now_rows
            ],
        },
        "trends": {
            "cost_growth_percent_mom": ratio(projection, last_month) * 100 - 100
            if last_month > 0
            else 0.0,
            "usage_growth_percent_mom": usage_growth(now_rows, prev_rows),
            "efficiency_metrics": {
                "cost_per_active_user": ratio(projection, figures["active_users"]),
                "cost_per_api_request": ratio(total, figures["requests"]),
                "cost_per_gb_storage": ratio(projection, figures["storage_gb"]),
            },
        },
        "optimization_recommendations": figures["recommendations"],
    }


async def get_costs(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await caller(request)
    no_query(request)
    now = time.time()
    current = month_start(datetime.fromtimestamp(now, UTC))
    async with services.db.as_caller(who) as conn:
        if not await policy_admits(conn, COSTS_PROBE):
            raise ApiError("forbidden", "the cost_tracking policy admits admins and finance only")
        cur = await conn.execute(_ROWS, {"current": current, "previous": previous_month(current)})
        rows = await cur.fetchall()
    figures = await _prometheus(services, now, current)
    return web.json_response(report(rows, current, figures))
