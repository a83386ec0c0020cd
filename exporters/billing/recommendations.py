"""Cost optimisation recommendations: explicit rules over a month's charges, each with its
estimated monthly saving (the month's figure scaled to a whole month when it is still running).

1. preview_share — a provider's preview-deployment usage above `max_preview_share` of its usage:
   saving = preview cost - max_preview_share x usage cost.
2. price_growth — a service whose cost grew more than its consumption (the unit price rose: an
   allowance ran out, a tier changed): saving = cost - quantity x last month's unit price.
3. idle_addon — a paid purchase whose consumed quantity is reported as zero (FOCUS: null means
   "not measurable", 0 means "measurable and unused"): saving = the purchase cost.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from exporters.billing.config import Recommendations
from exporters.billing.figures import ZERO, Month, days_in_month
from exporters.billing.focus import Totals

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Recommendation:
    rule: str
    provider: str
    service: str
    recommendation: str
    potential_savings_usd: Decimal
    effort_level: str  # low | medium | high, as in the spec's API


def monthly_factor(m: Month) -> Decimal:
    """Scale a running month's figures to a whole month (1 when the month is complete)."""
    if m.complete:
        return Decimal(1)
    elapsed = (m.as_of - m.start).days + 1
    return Decimal(days_in_month(m.start)) / Decimal(elapsed)


def recommend(current: Month, previous: Month, cfg: Recommendations) -> list[Recommendation]:
    f = monthly_factor(current)
    out = [
        *_preview_share(current, cfg, f),
        *_price_growth(current, previous, cfg, f),
        *_idle_addons(current),
    ]
    kept = [r for r in out if r.potential_savings_usd >= cfg.min_saving_usd]
    return sorted(kept, key=lambda r: (-r.potential_savings_usd, r.rule, r.provider, r.service))


def _preview_share(m: Month, cfg: Recommendations, f: Decimal) -> list[Recommendation]:
    usage: dict[str, Decimal] = defaultdict(Decimal)
    preview: dict[str, Decimal] = defaultdict(Decimal)
    for k, t in m.totals.items():
        if k.charge_category != "usage":
            continue
        usage[k.provider] += t.effective
        if k.environment == "preview":
            preview[k.provider] += t.effective
    out = []
    for provider, cost in sorted(preview.items()):
        total = usage[provider]
        if total <= 0 or cost / total <= cfg.max_preview_share:
            continue
        saving = ((cost - cfg.max_preview_share * total) * f).quantize(CENT)
        out.append(
            Recommendation(
                "preview_share",
                provider,
                "preview deployments",
                f"Preview deployments are {cost / total:.0%} of {provider} usage (limit "
                f"{cfg.max_preview_share:.0%}): build previews only for branches with open pull "
                "requests, skip unchanged projects (ignored build step), shorten preview retention.",
                saving,
                "low",
            )
        )
    return out


def _by_service(m: Month) -> dict[tuple[str, str], tuple[Totals, set[str]]]:
    out: dict[tuple[str, str], tuple[Totals, set[str]]] = {}
    for k, t in m.totals.items():
        if k.charge_category != "usage":
            continue
        tot, units = out.setdefault((k.provider, k.service), (Totals(), set()))
        tot.add(t)
        if k.unit:
            units.add(k.unit)
    return out


def _price_growth(
    cur: Month, prev: Month, cfg: Recommendations, f: Decimal
) -> list[Recommendation]:
    before = _by_service(prev)
    out = []
    for (provider, service), (now, units) in sorted(_by_service(cur).items()):
        then = before.get((provider, service))
        if then is None or len(units) != 1 or units != then[1]:
            continue  # no like-for-like quantity to compare
        old = then[0]
        if old.billed <= 0 or old.quantity <= 0 or now.quantity <= 0:
            continue
        cost, qty = now.billed * f, now.quantity * f
        cost_growth = cost / old.billed - 1
        qty_growth = qty / old.quantity - 1
        if cost_growth - qty_growth <= cfg.max_price_growth:
            continue
        old_price = old.billed / old.quantity
        unit = next(iter(units))
        out.append(
            Recommendation(
                "price_growth",
                provider,
                service,
                f"{service} cost grew {cost_growth:+.0%} while its consumption grew {qty_growth:+.0%}: "
                f"the price per {unit} rose from {old_price:.6f} to {cost / qty:.6f} USD. Check the "
                "plan's included allowance and tier, and whether a commitment or spend cap is cheaper.",
                (cost - qty * old_price).quantize(CENT),
                "medium",
            )
        )
    return out


def _idle_addons(m: Month) -> list[Recommendation]:
    idle: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    used: set[tuple[str, str]] = set()
    # The whole fee: a monthly purchase spread over its days is partly still "ahead".
    for k, t in [*m.totals.items(), *m.ahead.items()]:
        if k.charge_category != "purchase" or not k.unit:
            continue
        if t.quantity == ZERO and t.billed > 0:
            idle[(k.provider, k.service)] += t.billed
        elif t.quantity > 0:
            used.add((k.provider, k.service))
    out = []
    for (provider, service), cost in sorted(idle.items()):
        if (provider, service) in used:
            continue
        out.append(
            Recommendation(
                "idle_addon",
                provider,
                service,
                f"{service} is paid for but reports no consumption this month: remove the add-on "
                "or downgrade it if nothing depends on it.",
                cost.quantize(CENT),  # a monthly fee: charged once, not scaled
                "low",
            )
        )
    return out
