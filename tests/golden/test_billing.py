"""The billing exporter's output from a fixed snapshot (26 November 2026, amounts in Decimal):
Vercel up with usage, a purchase, a credit and a spike yesterday; OpenAI down since start (auth),
never delivered; a Supabase invoice folder billed by the whole month, with rejected rows and an
old io error; cost_tracking written once and failed once; top_services 2 (so "other" appears)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from exporters.billing import figures
from exporters.billing.app import BillingExporter
from exporters.billing.config import BillingConfig, Recommendations
from exporters.billing.focus import Key, Totals
from exporters.billing.ledger import Ledger
from exporters.billing.recommendations import recommend
from exporters.billing.snapshot import CostTrackingView, Snapshot, SourceView
from tests.golden import check_golden, render_golden

TODAY = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
D = Decimal


def _key(provider: str, cat: str, service: str, charge: str = "usage", unit: str = "") -> Key:
    return Key(provider, cat, service, charge, "production" if provider == "vercel" else "", unit)


def _ledger() -> Ledger:
    ledger = Ledger()
    vercel: dict[date, dict[Key, Totals]] = {}
    openai: dict[date, dict[Key, Totals]] = {}
    day = date(2026, 10, 1)
    while day <= TODAY:
        functions = D("4.75") if day == TODAY - timedelta(days=1) else D("1.25")
        vercel[day] = {
            _key("vercel", "compute", "Functions", unit="GB-Hrs"): Totals(
                functions, functions, D("10.5"), 24
            ),
            _key("vercel", "networking", "Fast Data Transfer", unit="GB"): Totals(
                D("0.5"), D("0.5"), D("4"), 24
            ),
        }
        openai[day] = {
            _key("openai", "ai_and_machine_learning", "gpt-4o-mini, input", unit="tokens"): Totals(
                D("0.75"), D("0.75"), D("1500000"), 1
            )
        }
        day += timedelta(days=1)
    vercel[date(2026, 11, 1)][_key("vercel", "web", "Pro seat", "purchase")] = Totals(
        D("20"), D("20"), D("1"), 1
    )
    vercel[date(2026, 10, 15)][_key("vercel", "compute", "Functions", "credit")] = Totals(
        D("-5"), D("-5"), D(0), 1
    )
    ledger.apply("vercel", None, vercel)
    ledger.apply("openai", None, openai)
    # Supabase's monthly invoices, spread evenly over their days (October complete, November
    # known to its end: billed by the whole month).
    supabase: dict[date, dict[Key, Totals]] = {}
    for start, days in ((date(2026, 10, 1), 31), (date(2026, 11, 1), 30)):
        for i in range(days):
            supabase[start + timedelta(days=i)] = {
                _key("supabase", "databases", "Compute", unit="Hours"): Totals(
                    D("0.5"), D("0.5"), D("24"), 1
                )
            }
    ledger.apply("supabase", None, supabase)
    return ledger


def snapshot() -> Snapshot:
    figs = figures.compute(_ledger(), TODAY, 2)
    return Snapshot(
        monthly_budget_usd=D(500),
        sources=(
            SourceView(
                name="openai",
                max_data_age=259200.0,
                up=False,
                last_success=None,
                refresh_seconds=0.25,
                newest_data=None,
                rows=0,
                requests=3,
                rejected={},
                errors={"auth": 3},
            ),
            SourceView(
                name="supabase",
                max_data_age=3456000.0,
                up=True,
                last_success=NOW - 60,
                refresh_seconds=0.125,
                newest_data=datetime(2026, 12, 1, tzinfo=UTC).timestamp(),
                rows=122,
                requests=0,
                rejected={"bad_number": 2, "currency_mismatch": 1},
                errors={"io": 1},
            ),
            SourceView(
                name="vercel",
                max_data_age=259200.0,
                up=True,
                last_success=NOW - 30,
                refresh_seconds=1.5,
                newest_data=NOW - 3600,
                rows=2738,
                requests=4,
                rejected={"missing_column": 1},
                errors={"rate_limited": 1, "server": 2},
            ),
        ),
        figures=figs,
        cost_tracking=CostTrackingView(last_success=NOW - 30, errors={"unavailable": 1}),
        # None here (no rule fires on this ledger): the family is rendered empty.
        recommendations=tuple(recommend(figs.current, figs.previous, Recommendations())),
    )


def test_billing_golden(tmp_path: Path) -> None:
    cfg = BillingConfig.model_validate(
        {"folders": [{"name": "supabase", "path": str(tmp_path)}], "top_services": 2}
    )
    text = render_golden(BillingExporter(cfg), snapshot())
    check_golden("billing", text)
