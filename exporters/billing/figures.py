"""What the metrics and the report say about a month, computed from the ledger in Decimal.

Month-to-date includes today's partial day (it is money already spent). The month-end
projection is `usage_run_rate_7d`: the month's charges so far, minus today's partial usage,
plus the mean daily *usage* cost of the last seven complete days times the days left (today
included). One-off charges (purchases, tax, credits, adjustments) are counted as they are and
never extrapolated: a seat bought on the 1st does not recur every day. A provider that bills
by the month (its rows cover the whole month, e.g. an invoice) is projected at that total.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

# The billing month (figures.month_start and friends, as the billing modules call them).
from common.months import month_start as month_start
from common.months import next_month as next_month
from common.months import previous_month as previous_month
from exporters.billing.focus import Key, Totals
from exporters.billing.ledger import Ledger

METHOD = "usage_run_rate_7d"
WHOLE_MONTH = "billed_whole_month"
RUN_RATE_DAYS = 7
BASELINE_DAYS = 14
ZERO = Decimal(0)


def days_in_month(d: date) -> int:
    return calendar.monthrange(d.year, d.month)[1]


@dataclass(slots=True)
class Month:
    """One month by provider: totals by key, and the projection when the month is current."""

    start: date
    as_of: date  # the last day included (today for the current month)
    totals: dict[Key, Totals]
    projection: dict[str, Decimal] = field(default_factory=dict)
    run_rate: dict[str, Decimal] = field(default_factory=dict)
    method: dict[str, str] = field(default_factory=dict)
    # Charges already known for the rest of the month (monthly rows spread over their days).
    ahead: dict[Key, Totals] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.as_of >= next_month(self.start) - timedelta(days=1)

    def billed(self, provider: str | None = None) -> Decimal:
        return sum(
            (t.billed for k, t in self.totals.items() if provider in (None, k.provider)), ZERO
        )

    def effective(self, provider: str | None = None) -> Decimal:
        return sum(
            (t.effective for k, t in self.totals.items() if provider in (None, k.provider)), ZERO
        )

    def providers(self) -> list[str]:
        return sorted({k.provider for k in self.totals})

    def by(self, *fields: str) -> dict[tuple[str, ...], Totals]:
        out: dict[tuple[str, ...], Totals] = defaultdict(Totals)
        for k, t in self.totals.items():
            out[tuple(getattr(k, f) for f in fields)].add(t)
        return dict(out)

    def projected(self) -> Decimal:
        return sum(self.projection.values(), ZERO) if self.projection else self.billed()


def daily_usage(ledger: Ledger, start: date, end: date) -> dict[str, dict[date, Decimal]]:
    """Usage (billed) cost per provider per day, start <= day < end."""
    out: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for d, k, t in ledger.entries(start, end):
        if k.charge_category == "usage":
            out[k.provider][d] += t.billed
    return out


def month(ledger: Ledger, start: date, today: date) -> Month:
    """The month beginning `start`, as known on `today` (projected if it is still running)."""
    end = next_month(start)
    as_of = min(today, end - timedelta(days=1))
    m = Month(start, as_of, ledger.total(start, as_of + timedelta(days=1)))
    if today >= end:
        return m
    usage = daily_usage(ledger, today - timedelta(days=RUN_RATE_DAYS), today + timedelta(days=1))
    left = Decimal((end - today).days)  # today counts as left: its data is partial
    # A provider whose charges already reach past today (a monthly invoice spread over its
    # days) has told us its month: project that total rather than extrapolate.
    ahead = m.ahead = ledger.total(today + timedelta(days=1), end)
    whole = {k.provider for k in ahead}
    for provider in sorted(set(m.providers()) | set(usage)):
        if provider in whole:
            m.run_rate[provider] = ZERO
            m.method[provider] = WHOLE_MONTH
            m.projection[provider] = m.billed(provider) + sum(
                (t.billed for k, t in ahead.items() if k.provider == provider), ZERO
            )
            continue
        days = usage.get(provider, {})
        complete = [days.get(today - timedelta(days=i), ZERO) for i in range(1, RUN_RATE_DAYS + 1)]
        # A source younger than a week: the rate of the days it has (none → no extrapolation).
        known = [d for d in days if d < today]
        n = min(RUN_RATE_DAYS, (today - min(known)).days) if known else 0
        rate = sum(complete[:n], ZERO) / n if n else ZERO
        m.run_rate[provider] = rate
        m.method[provider] = METHOD
        m.projection[provider] = m.billed(provider) - days.get(today, ZERO) + rate * left
    return m


@dataclass(frozen=True, slots=True)
class Spike:
    day: date
    cost: Decimal
    baseline: Decimal


def last_day_vs_baseline(ledger: Ledger, today: date) -> dict[str, Spike]:
    """Per provider: yesterday's usage cost and the mean of the fourteen days before it."""
    yesterday = today - timedelta(days=1)
    first = yesterday - timedelta(days=BASELINE_DAYS)
    usage = daily_usage(ledger, first, today)
    out = {}
    for provider, days in usage.items():
        before = [days.get(first + timedelta(days=i), ZERO) for i in range(BASELINE_DAYS)]
        out[provider] = Spike(
            yesterday, days.get(yesterday, ZERO), sum(before, ZERO) / Decimal(BASELINE_DAYS)
        )
    return out


def top_services(m: Month, n: int) -> dict[tuple[str, str], Decimal]:
    """Effective cost by (provider, service): the n largest, the rest summed as "other"."""
    by = {k: t.effective for k, t in m.by("provider", "service").items()}
    ranked = sorted(by.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    out: dict[tuple[str, str], Decimal] = {}
    for i, ((provider, service), cost) in enumerate(ranked):
        key = (provider, service) if i < n else (provider, "other")
        out[key] = out.get(key, ZERO) + cost
    return out


@dataclass(frozen=True, slots=True)
class Figures:
    """What /metrics says about the money: computed from the ledger once per refresh into new
    objects that nothing changes afterwards, so a scrape may read them at any time."""

    today: date
    current: Month
    previous: Month
    spikes: dict[str, Spike]
    services: dict[tuple[str, str], Decimal]


def compute(ledger: Ledger, today: date, top_n: int) -> Figures:
    start = month_start(today)
    current = month(ledger, start, today)
    return Figures(
        today=today,
        current=current,
        previous=month(ledger, previous_month(start), today),
        spikes=last_day_vs_baseline(ledger, today),
        services=top_services(current, top_n),
    )
