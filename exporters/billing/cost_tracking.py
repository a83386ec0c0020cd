"""A step of the refresh job: each refresh puts the current and previous months into the spec's
cost_tracking table through the schema package (which owns the tables and their migrations),
over one short connection from `common.postgres` (password file read per connection,
statement_timeout).

One row per provider, service category and UTC month. `cost_usd` is the billed cost of every
charge category together (what the invoice says); `cost_notes` keeps the categories apart so a
credit never hides usage. `usage_quantity`/`usage_unit` are those of the category's costliest
unit (a category mixes units: invocations, GB, seats); the notes say so when there are several.
"""

from __future__ import annotations

import collections
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import psycopg

from common.config import describe_os_error
from common.postgres import connect
from exporters.billing.config import CostTracking
from exporters.billing.figures import ZERO, Month, next_month
from exporters.billing.focus import CHARGE_CATEGORIES, Totals
from exporters.billing.snapshot import CostTrackingView
from schema.rows import CostRow
from schema.writes import write_costs

log = logging.getLogger("exporters.billing.cost_tracking")
CENT = Decimal("0.01")
APPLICATION_NAME = "wsinfra-billing-exporter"


def cost_rows(m: Month, tiers: dict[str, str]) -> list[CostRow]:
    end = next_month(m.start)
    rows = []
    for (provider, category), keys in sorted(_group(m).items()):
        by_charge: dict[str, Decimal] = defaultdict(Decimal)
        by_unit: dict[str, Totals] = defaultdict(Totals)
        for k, t in keys:
            by_charge[k.charge_category] += t.billed
            if k.charge_category == "usage" and k.unit:
                by_unit[k.unit].add(t)
        cost = sum(by_charge.values(), ZERO)
        unit, qty = "", ZERO
        if by_unit:
            unit, top = max(by_unit.items(), key=lambda kv: (kv[1].billed, kv[0]))
            qty = top.quantity
        notes = "; ".join(
            f"{c} {by_charge[c].quantize(CENT)}" for c in CHARGE_CATEGORIES if c in by_charge
        )
        if len(by_unit) > 1:
            notes += f"; quantity is {unit} only (units: {', '.join(sorted(by_unit))})"
        if not m.complete:
            notes += f"; month to date as of {m.as_of.isoformat()}"
        share = None
        if provider in m.projection and m.billed(provider):
            # The provider's projection shared out by this category's part of its cost so far.
            share = (m.projection[provider] * cost / m.billed(provider)).quantize(CENT)
        rows.append(
            CostRow(
                service_provider=provider,
                service_category=category,
                billing_period_start=m.start,
                billing_period_end=end,
                usage_quantity=qty,
                usage_unit=(unit or "none")[:50],
                cost_usd=cost,
                projected_monthly_cost=share if not m.complete else cost,
                usage_tier=tiers.get(provider),
                cost_notes=notes,
            )
        )
    return rows


def _group(m: Month) -> dict[tuple[str, str], list[tuple[Any, Totals]]]:
    out: dict[tuple[str, str], list[tuple[Any, Totals]]] = defaultdict(list)
    for k, t in m.totals.items():
        out[(k.provider, k.service_category)].append((k, t))
    return out


class CostTrackingWriter:
    def __init__(self, cfg: CostTracking, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.last_success: float | None = None
        self.errors: collections.Counter[str] = collections.Counter()

    async def write(self, months: list[Month]) -> bool:
        """Make cost_tracking hold exactly these months' rows; a failure is counted, not raised."""
        rows = [r for m in months for r in cost_rows(m, self.cfg.tiers)]
        providers = sorted({p for m in months for p in m.providers()})
        periods = [(m.start, next_month(m.start)) for m in months]
        try:
            async with await connect(self.cfg, APPLICATION_NAME) as conn:
                await write_costs(conn, periods, providers, rows)
        except psycopg.errors.UndefinedTable:
            self._fail("schema", "cost_tracking does not exist: run `python -m recorder migrate`")
            return False
        except psycopg.Error as exc:
            self._fail("unavailable", type(exc).__name__)
            return False
        except OSError as exc:  # the password file (read at each connection)
            self._fail("unavailable", f"password file: {describe_os_error(exc)}")
            return False
        self.last_success = self.clock()
        return True

    def view(self) -> CostTrackingView:
        return CostTrackingView(self.last_success, MappingProxyType(dict(self.errors)))

    def _fail(self, reason: str, detail: str) -> None:
        self.errors[reason] += 1
        log.warning("cost_tracking write failed", extra={"reason": reason, "detail": detail})
