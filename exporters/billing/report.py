"""The monthly cost report: totals, breakdowns, cost per active user, MoM, projection, growth
phase and recommendations — as text for people and JSON (the spec's CostAnalysisResponse
fields) for machines. Every figure is a Decimal sum of the input rows, rounded to the cent only
when printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from exporters.billing.config import BillingConfig, Phase
from exporters.billing.figures import ZERO, Month
from exporters.billing.focus import CHARGE_CATEGORIES
from exporters.billing.recommendations import Recommendation, recommend

CENT = Decimal("0.01")


def cents(d: Decimal) -> Decimal:
    return d.quantize(CENT, rounding=ROUND_HALF_UP)


def usd(d: Decimal) -> str:
    return f"${cents(d):,.2f}"


@dataclass(frozen=True, slots=True)
class PhaseView:
    current: Phase
    lower: int  # first user count of the phase
    next: Phase | None
    next_lower: int | None


def phase_for(users: int, phases: list[Phase]) -> PhaseView:
    lower = 0
    for i, p in enumerate(phases):
        if p.max_users is None or users <= p.max_users:
            nxt = phases[i + 1] if i + 1 < len(phases) else None
            return PhaseView(p, lower, nxt, (p.max_users + 1) if nxt and p.max_users else None)
        lower = p.max_users + 1
    raise AssertionError("the last phase is open-ended")  # guaranteed by the config check


@dataclass(slots=True)
class Report:
    month: Month
    previous: Month
    cfg: BillingConfig
    active_users: int | None
    recommendations: list[Recommendation]

    @property
    def total(self) -> Decimal:
        return self.month.billed()

    @property
    def projection(self) -> Decimal:
        return self.month.projected()

    def mom(self) -> Decimal | None:
        """Month over month: the (projected) month against the previous one, as a ratio - 1."""
        before = self.previous.billed()
        return self.projection / before - 1 if before > 0 else None

    def cost_per_user(self) -> Decimal | None:
        if not self.active_users:
            return None
        return self.projection / Decimal(self.active_users)

    def to_json(self) -> dict[str, Any]:
        m = self.month
        breakdown = []
        units = m.by("provider", "service_category", "unit")
        charges = m.by("provider", "service_category", "charge_category")
        for (prov, cat), t in sorted(m.by("provider", "service_category").items()):
            # The costliest unit's quantity (a category mixes units), as cost_tracking keeps it.
            measured = [(u, tt) for (p, c, u), tt in units.items() if (p, c) == (prov, cat) and u]
            unit, top = max(measured, key=lambda x: (x[1].billed, x[0])) if measured else ("", None)
            qty = top.quantity if top is not None else ZERO
            breakdown.append(
                {
                    "service_provider": prov,
                    "service_category": cat,
                    "cost_usd": str(cents(t.billed)),
                    "effective_cost_usd": str(cents(t.effective)),
                    "by_charge_category": {
                        c: str(cents(tt.billed))
                        for (p, cc, c), tt in sorted(charges.items())
                        if (p, cc) == (prov, cat)
                    },
                    "usage_quantity": str(qty),
                    "usage_unit": unit,
                    "cost_per_unit": str(top.billed / qty) if top is not None and qty else None,
                }
            )
        mom, cpu = self.mom(), self.cost_per_user()
        phase = (
            phase_for(self.active_users, self.cfg.phases) if self.active_users is not None else None
        )
        return {
            "month": m.start.strftime("%Y-%m"),
            "complete": m.complete,
            "as_of": m.as_of.isoformat(),
            "current_month": {
                "total_cost_usd": str(cents(self.total)),
                "effective_cost_usd": str(cents(m.effective())),
                "projected_monthly_cost_usd": str(cents(self.projection)),
                "projection_method": "actual" if m.complete else "usage_run_rate_7d",
                "by_provider": {p: str(cents(m.billed(p))) for p in m.providers()},
                "by_charge_category": {
                    c[0]: str(cents(t.billed)) for c, t in sorted(m.by("charge_category").items())
                },
                "cost_breakdown": breakdown,
            },
            "budget_usd": str(self.cfg.monthly_budget_usd),
            "budget_used_ratio": str(
                (self.total / self.cfg.monthly_budget_usd).quantize(Decimal("0.0001"))
            )
            if self.cfg.monthly_budget_usd
            else None,
            "previous_month_cost_usd": str(cents(self.previous.billed())),
            "trends": {
                "cost_growth_percent_mom": str((mom * 100).quantize(Decimal("0.1")))
                if mom is not None
                else None,
                "active_users_30d": self.active_users,
                "efficiency_metrics": {
                    "cost_per_active_user": str(cents(cpu)) if cpu is not None else None,
                },
            },
            "growth_phase": _phase_json(phase, cpu),
            "optimization_recommendations": [
                {
                    "rule": r.rule,
                    "service": f"{r.provider}: {r.service}",
                    "recommendation": r.recommendation,
                    "potential_savings_usd": str(r.potential_savings_usd),
                    "effort_level": r.effort_level,
                }
                for r in self.recommendations
            ],
        }

    def to_text(self) -> str:
        m = self.month
        state = "complete" if m.complete else f"month to date as of {m.as_of.isoformat()} (UTC)"
        lines = [f"wsinfra monthly cost report — {m.start:%Y-%m} ({state})", ""]
        budget = self.cfg.monthly_budget_usd
        used = f" ({self.total / budget:.1%} of the {usd(budget)} budget)" if budget else ""
        lines.append(f"Total billed            {usd(self.total)}{used}")
        lines.append(f"Effective (amortised)   {usd(m.effective())}")
        if not m.complete:
            lines.append(
                f"Projected month end     {usd(self.projection)}  (7-day usage run rate; one-off charges as they are)"
            )
        mom = self.mom()
        lines.append(
            f"Previous month          {usd(self.previous.billed())}"
            + (
                f"  (MoM {mom:+.1%}{', projected' if not m.complete else ''})"
                if mom is not None
                else "  (MoM: no previous data)"
            )
        )
        lines += [
            "",
            "By provider and category (billed; usage / purchase / tax / credit / adjustment)",
        ]
        cats = m.by("provider", "service_category", "charge_category")
        for (prov, cat), t in sorted(m.by("provider", "service_category").items()):
            parts = " / ".join(
                usd(cats[(prov, cat, c)].billed) if (prov, cat, c) in cats else "-"
                for c in CHARGE_CATEGORIES
            )
            lines.append(f"  {prov:<12} {cat:<24} {usd(t.billed):>12}   {parts}")
        for prov in m.providers():
            lines.append(f"  {prov:<12} {'total':<24} {usd(m.billed(prov)):>12}")
        lines.append("")
        cpu = self.cost_per_user()
        if self.active_users is None:
            lines.append("Active users (30 days)  unknown: pass --active-users or --prometheus")
        else:
            lines.append(f"Active users (30 days)  {self.active_users:,}")
        if cpu is not None:
            verdict = "over the $2.00 target" if cpu > 2 else "within the $2.00 target"
            lines.append(
                f"Cost per active user    {usd(cpu)} ({verdict}; projected month / active users)"
            )
        if self.active_users is not None:
            phase = phase_for(self.active_users, self.cfg.phases)
            lines += ["", *_phase_text(phase, cpu)]
        lines += ["", "Recommendations"]
        if not self.recommendations:
            lines.append("  none: no rule found a saving worth acting on")
        for r in self.recommendations:
            lines.append(
                f"  - [{r.effort_level} effort, saves ~{usd(r.potential_savings_usd)}/month] {r.provider}/{r.service}: {r.recommendation}"
            )
        return "\n".join(lines) + "\n"


def _bounds(view: PhaseView) -> str:
    hi = view.current.max_users
    return f"{view.lower:,}–{hi:,} users" if hi is not None else f"{view.lower:,}+ users"


def _plan_cost(p: Phase) -> str:
    return (
        f"{usd(p.monthly_budget_usd)}/month"
        if p.monthly_budget_usd is not None
        else "custom pricing"
    )


def _phase_text(view: PhaseView, cpu: Decimal | None) -> list[str]:
    out = [
        f"Growth phase            {view.current.name} ({_bounds(view)}; plan {_plan_cost(view.current)}: {', '.join(view.current.services)})"
    ]
    if view.next is None:
        out.append("Next phase              none: the plan's last phase")
        return out
    line = f"Next phase              {view.next.name} from {view.next_lower:,} users: plan {_plan_cost(view.next)} ({', '.join(view.next.services)})"
    out.append(line)
    if cpu is not None and view.next_lower is not None:
        out.append(
            f"                        at today's {usd(cpu)} per user, {view.next_lower:,} users would cost ≈ {usd(cpu * view.next_lower)}/month"
        )
    return out


def _phase_json(view: PhaseView | None, cpu: Decimal | None) -> dict[str, Any] | None:
    if view is None:
        return None
    nxt = view.next
    return {
        "current": view.current.name,
        "current_plan_monthly_usd": str(view.current.monthly_budget_usd)
        if view.current.monthly_budget_usd is not None
        else None,
        "next": nxt.name if nxt else None,
        "next_from_users": view.next_lower,
        "next_plan_monthly_usd": str(nxt.monthly_budget_usd)
        if nxt and nxt.monthly_budget_usd is not None
        else None,
        "next_at_current_cost_per_user_usd": str(cents(cpu * view.next_lower))
        if cpu is not None and view.next_lower
        else None,
    }


def build(cfg: BillingConfig, month: Month, previous: Month, active_users: int | None) -> Report:
    return Report(
        month, previous, cfg, active_users, recommend(month, previous, cfg.recommendations)
    )
