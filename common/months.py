"""Calendar months (UTC dates): the billing month, the cost report's, the maintenance budget's."""

from __future__ import annotations

from datetime import date, timedelta


def month_start(d: date) -> date:
    return date(d.year, d.month, 1)


def next_month(d: date) -> date:
    return (d.replace(day=28) + timedelta(days=4)).replace(day=1)


def previous_month(d: date) -> date:
    return (d.replace(day=1) - timedelta(days=1)).replace(day=1)
