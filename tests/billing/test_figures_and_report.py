"""Figures, recommendations and the monthly report, on hand-made ledgers and on the fakes."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from exporters.billing import figures
from exporters.billing.cli import make_report
from exporters.billing.config import BillingConfig, Recommendations
from exporters.billing.focus import Key, Totals
from exporters.billing.ledger import Ledger
from exporters.billing.recommendations import recommend
from exporters.billing.report import phase_for
from fakes.billing_api import supabase_invoice
from tests.billing.helpers import rig

D = Decimal


def key(
    provider: str = "vercel",
    service: str = "Edge Requests",
    charge: str = "usage",
    env: str = "",
    unit: str = "Requests",
) -> Key:
    return Key(provider, "networking", service, charge, env, unit)


def book(entries: dict[date, list[tuple[Key, str, str]]]) -> Ledger:
    led = Ledger()
    led.replace_all(
        "s",
        {
            d: {k: Totals(D(cost), D(cost), D(qty), 1) for k, cost, qty in rows}
            for d, rows in entries.items()
        },
    )
    return led


def test_spike_compares_yesterday_with_the_fourteen_days_before() -> None:
    today = date(2026, 11, 20)
    entries = {today - timedelta(days=i): [(key(), "10", "1")] for i in range(2, 16)}
    entries[today - timedelta(days=1)] = [(key(), "55", "1")]
    entries[today - timedelta(days=16)] = [(key(), "1000", "1")]  # outside the baseline
    s = figures.last_day_vs_baseline(book(entries), today)["vercel"]
    assert (s.cost, s.baseline) == (D(55), D(10))


def test_a_young_source_projects_from_the_days_it_has() -> None:
    today = date(2026, 11, 20)
    entries = {today - timedelta(days=i): [(key(), "12", "1")] for i in (1, 2, 3)}
    m = figures.month(book(entries), date(2026, 11, 1), today)
    assert m.run_rate["vercel"] == D(12)
    assert m.projection["vercel"] == D(36) + D(12) * 11  # 20th-30th left


def test_purchases_are_not_extrapolated() -> None:
    today = date(2026, 11, 10)
    entries = {today - timedelta(days=i): [(key(), "1", "1")] for i in range(1, 8)}
    entries[date(2026, 11, 1)] = [
        *entries.get(date(2026, 11, 1), []),
        (key(service="Pro", charge="purchase", unit=""), "60", "0"),
    ]
    m = figures.month(book(entries), date(2026, 11, 1), today)
    assert m.projection["vercel"] == D(60) + D(7) + D(1) * 21  # 7 days so far + 21 left at 1/day


def test_top_services_keeps_n_and_sums_the_rest_as_other() -> None:
    today = date(2026, 11, 10)
    entries = {today: [(key(service=f"svc{i}"), str(i), "1") for i in range(1, 6)]}
    m = figures.month(book(entries), date(2026, 11, 1), today)
    assert figures.top_services(m, 2) == {
        ("vercel", "svc5"): D(5),
        ("vercel", "svc4"): D(4),
        ("vercel", "other"): D(6),
    }


def months(
    cur: dict[Key, tuple[str, str]], prev: dict[Key, tuple[str, str]]
) -> tuple[figures.Month, figures.Month]:
    def m(start: date, rows: dict[Key, tuple[str, str]]) -> figures.Month:
        return figures.Month(
            start,
            figures.next_month(start) - timedelta(days=1),
            {k: Totals(D(c), D(c), D(q), 1) for k, (c, q) in rows.items()},
        )

    return m(date(2026, 10, 1), cur), m(date(2026, 9, 1), prev)


def test_preview_share_rule() -> None:
    cfg = Recommendations()
    cur, prev = months({key(env="production"): ("600", "1"), key(env="preview"): ("400", "1")}, {})
    [r] = recommend(cur, prev, cfg)
    assert (r.rule, r.potential_savings_usd, r.effort_level) == (
        "preview_share",
        D("200.00"),
        "low",
    )  # 400 - 20% of 1000
    cur, prev = months({key(env="production"): ("900", "1"), key(env="preview"): ("100", "1")}, {})
    assert recommend(cur, prev, cfg) == []


def test_price_growth_rule() -> None:
    cfg = Recommendations()
    # Cost doubled while consumption grew 10 %: the unit price rose from 1.00 to ~1.82.
    cur, prev = months({key(): ("200", "110")}, {key(): ("100", "100")})
    [r] = recommend(cur, prev, cfg)
    assert r.rule == "price_growth"
    assert r.potential_savings_usd == D("90.00")  # 200 - 110 x 1.00
    # Cost grew with consumption: nothing to say.
    cur, prev = months({key(): ("200", "200")}, {key(): ("100", "100")})
    assert recommend(cur, prev, cfg) == []


def test_idle_addon_rule_and_minimum_saving() -> None:
    cfg = Recommendations()
    ipv4 = key(provider="supabase", service="IPv4 Address", charge="purchase", unit="Addresses")
    seat = key(service="Pro", charge="purchase", unit="")  # null quantity: not measurable, not idle
    cur, prev = months({ipv4: ("40", "0"), seat: ("60", "0")}, {})
    [r] = recommend(cur, prev, cfg)
    assert (r.rule, r.service, r.potential_savings_usd) == (
        "idle_addon",
        "IPv4 Address",
        D("40.00"),
    )
    cur, prev = months({ipv4: ("4", "0")}, {})
    assert recommend(cur, prev, cfg) == []  # under min_saving_usd


@pytest.mark.parametrize(
    ("users", "phase", "nxt"),
    [
        (0, "Phase 1", "Phase 2"),
        (1000, "Phase 1", "Phase 2"),
        (1001, "Phase 2", "Phase 3"),
        (20001, "Phase 4", None),
    ],
)
def test_growth_phase_by_active_users(users: int, phase: str, nxt: str | None) -> None:
    cfg = BillingConfig.model_validate({"folders": [{"name": "f", "path": "/tmp"}]})
    view = phase_for(users, cfg.phases)
    assert view.current.name == phase
    assert (view.next.name if view.next else None) == nxt


async def test_report_reconciles_to_the_cent_with_the_input_rows(tmp_path: Path) -> None:
    """The report's figures equal the fakes' rows summed here, independently, for October."""
    async with rig(tmp_path) as r:
        cfg = r.job.cfg
        rep = await make_report(cfg, date(2026, 10, 1), date(2026, 11, 26), 400)
        doc = rep.to_json()
    data = r.state.data
    days = [date(2026, 10, 1) + timedelta(days=i) for i in range(31)]
    vercel = sum((Decimal(str(x["BilledCost"])) for d in days for x in data.vercel_day(d)), D(0))
    openai = sum(
        (Decimal(str(x["amount"]["value"])) for d in days for x in data.openai_day(d)), D(0)
    )
    supabase = sum((Decimal(x["BilledCost"]) for x in supabase_invoice(date(2026, 10, 1), 2)), D(0))
    total = vercel + openai + supabase
    cents = Decimal("0.01")
    assert doc["complete"] is True
    assert doc["current_month"]["total_cost_usd"] == str(total.quantize(cents))
    assert doc["current_month"]["projected_monthly_cost_usd"] == str(total.quantize(cents))
    assert doc["current_month"]["by_provider"] == {
        "openai": str(openai.quantize(cents)),
        "supabase": str(supabase.quantize(cents)),
        "vercel": str(vercel.quantize(cents)),
    }
    # The breakdown adds up to the total (to the cent, each line rounded from exact sums).
    lines = sum((Decimal(x["cost_usd"]) for x in doc["current_month"]["cost_breakdown"]), D(0))
    assert abs(lines - total) <= Decimal("0.005") * len(doc["current_month"]["cost_breakdown"])
    credits = Decimal(doc["current_month"]["by_charge_category"]["credit"])
    assert credits == D(-10)  # kept apart from usage
    sept = sum(
        (
            Decimal(str(x["BilledCost"]))
            for d in range(30)
            for x in data.vercel_day(date(2026, 9, 1) + timedelta(days=d))
        ),
        D(0),
    )
    sept += sum(
        (
            Decimal(str(x["amount"]["value"]))
            for d in range(30)
            for x in data.openai_day(date(2026, 9, 1) + timedelta(days=d))
        ),
        D(0),
    )
    sept += sum((Decimal(x["BilledCost"]) for x in supabase_invoice(date(2026, 9, 1), 1)), D(0))
    assert doc["previous_month_cost_usd"] == str(sept.quantize(cents))
    assert doc["trends"]["cost_growth_percent_mom"] == str(
        ((total / sept - 1) * 100).quantize(Decimal("0.1"))
    )
    assert doc["trends"]["efficiency_metrics"]["cost_per_active_user"] == str(
        (total / 400).quantize(cents)
    )
    assert doc["growth_phase"]["current"] == "Phase 1"
    assert doc["growth_phase"]["next_at_current_cost_per_user_usd"] == str(
        (total / 400 * 1001).quantize(cents)
    )
    # The demo data's preview share (15 %) is under the 20 % limit; its idle IPv4 add-on is
    # under the $10 minimum: no recommendation is invented.
    assert doc["optimization_recommendations"] == []


async def test_report_text_names_every_figure(tmp_path: Path) -> None:
    async with rig(
        tmp_path, recommendations={"max_preview_share": "0.1", "min_saving_usd": "1"}
    ) as r:
        rep = await make_report(r.job.cfg, date(2026, 11, 1), date(2026, 11, 26), 250)
    text = rep.to_text()
    for needle in (
        "2026-11 (month to date as of 2026-11-26",
        "Total billed",
        "Projected month end",
        "MoM",
        "vercel",
        "supabase",
        "openai",
        "Cost per active user",
        "Growth phase            Phase 1",
        "Next phase              Phase 2 from 1,001 users: plan $2,000.00/month",
        "Preview deployments are 1",
        "IPv4 Address",
    ):
        assert needle in text, needle
    doc: dict[str, Any] = json.loads(json.dumps(rep.to_json()))
    # With the limits lowered, all three rules speak: previews at ~15 % (> 10 %), the unused IPv4
    # add-on ($4 a month, whole fee), and egress past Supabase's 250 GB allowance (price per GB up).
    recs = {x["rule"]: x for x in doc["optimization_recommendations"]}
    assert set(recs) == {"preview_share", "idle_addon", "price_growth"}
    assert recs["idle_addon"]["potential_savings_usd"] == "4.00"
    assert recs["price_growth"]["service"] == "supabase: Egress"
