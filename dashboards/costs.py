"""Costs: the month so far against the budget, the projection, cost per active user, where the
money goes (provider, category, service), daily spikes, source health, and cost_tracking."""

from __future__ import annotations

from dashboards.common import BUDGET_STEPS, COST_PER_USER_STEPS, TAGS, B
from dashboards.lib import Dashboard, Panel, Prom, Sql, runbook, stat, table, timeseries


def summary(new_row: str) -> list[Panel]:
    """Month to date, budget used, projection, cost per active user: the Costs dashboard's first
    row, and the overview's Costs row."""
    return [
        stat(
            "Month to date",
            "Billed cost of this UTC month so far, every provider and charge category (credits lower it).",
            "currencyUSD",
            [Prom("sum(job:billing_month_to_date_cost_usd:sum)", instant=True)],
            decimals=2,
            new_row=new_row,
        ),
        stat(
            "Budget used",
            f"Month to date against the monthly budget (alerts at {B.budget.info_ratio:.0%}, {B.budget.warning_ratio:.0%}, {B.budget.critical_ratio:.0%}).",
            "percentunit",
            [Prom("max(job:billing_budget_used:ratio)", instant=True)],
            thresholds=BUDGET_STEPS,
            links=[runbook("BillingBudgetConsumed")],
        ),
        stat(
            "Projected month end",
            "Month to date plus the 7-day usage run rate for the days left; one-off charges are not extrapolated; monthly invoices count whole.",
            "currencyUSD",
            [Prom("sum(job:billing_month_end_projected_cost_usd:sum)", instant=True)],
            decimals=2,
            links=[runbook("BillingProjectedOverBudget")],
        ),
        stat(
            "Cost per active user",
            f"Projected month over 30-day active users (spec: under {B.cost_per_user.max_usd:.2f} USD).",
            "currencyUSD",
            [Prom("max(job:billing_cost_per_active_user_usd:ratio)", instant=True)],
            thresholds=COST_PER_USER_STEPS,
            decimals=2,
            links=[runbook("BillingCostPerActiveUserHigh")],
        ),
    ]


DASHBOARD = Dashboard(
    uid="wsinfra-costs",
    title="wsinfra / Costs",
    description="Infrastructure costs from FOCUS billing data (Vercel, OpenAI, FOCUS exports): budget, projection, cost per active user, breakdowns, spikes.",
    tags=[*TAGS, "costs"],
    variables=[],
    panels=[
        *summary("This month"),
        stat(
            "Month over month",
            f"Projected month against last month (alert above {B.mom_growth.max_ratio:.0%}).",
            "percentunit",
            [Prom("max(job:billing_cost_growth:ratio_mom)", instant=True)],
            thresholds=[(None, "green"), (B.mom_growth.max_ratio, "red")],
            links=[runbook("BillingCostGrowthHigh")],
        ),
        stat(
            "Last month",
            "Last UTC month's billed cost, as restated so far.",
            "currencyUSD",
            [Prom("sum(job:billing_previous_month_cost_usd:sum)", instant=True)],
            decimals=2,
        ),
        stat(
            "Monthly budget",
            "The billing exporter's configured monthly budget.",
            "currencyUSD",
            [Prom("max(billing_monthly_budget_usd)", instant=True)],
            decimals=0,
        ),
        stat(
            "Month elapsed",
            "Share of the UTC month's days already complete.",
            "percentunit",
            [Prom("max(billing_month_elapsed_ratio)", instant=True)],
        ),
        timeseries(
            "Month to date and projection",
            "Billed so far this month and the month-end projection, against the budget.",
            "currencyUSD",
            [
                Prom("sum(job:billing_month_to_date_cost_usd:sum)", "month to date"),
                Prom("sum(job:billing_month_end_projected_cost_usd:sum)", "projected month end"),
                Prom("max(billing_monthly_budget_usd)", "budget"),
            ],
            new_row="Where the money goes",
        ),
        table(
            "Month to date by provider, category and charge",
            "Billed and effective cost by provider, FOCUS service category and charge category: credits are their own rows, never netted into usage.",
            "currencyUSD",
            [
                Prom(
                    "max without (instance, job) (billing_month_to_date_billed_cost_usd)",
                    instant=True,
                    table=True,
                ),
                Prom(
                    "max without (instance, job) (billing_month_to_date_effective_cost_usd)",
                    instant=True,
                    table=True,
                ),
            ],
            hide=["Time"],
            rename={"Value #A": "billed", "Value #B": "effective"},
            w=12,
        ),
        table(
            "Top services this month",
            "Effective cost by service: the largest N services by name, the rest as 'other'.",
            "currencyUSD",
            [
                Prom(
                    "sort_desc(max without (instance, job) (billing_month_to_date_service_cost_usd))",
                    instant=True,
                    table=True,
                )
            ],
            hide=["Time"],
            rename={"Value": "cost"},
            w=12,
        ),
        timeseries(
            "Projection by provider",
            "Month-end projection per provider and its method (7-day usage run rate, or the month's own total for monthly invoices).",
            "currencyUSD",
            [
                Prom(
                    "max without (instance) (billing_month_end_projected_cost_usd)",
                    "{{provider}} ({{method}})",
                )
            ],
            stack=True,
        ),
        timeseries(
            "Yesterday's usage against its 14-day baseline",
            f"Per provider: yesterday's (UTC) usage cost and the mean of the 14 days before; a spike is above {B.spike.factor}x and {B.spike.min_usd} USD.",
            "currencyUSD",
            [
                Prom(
                    "max without (instance) (billing_last_day_usage_cost_usd)",
                    "{{provider}} yesterday",
                ),
                Prom(
                    "max without (instance) (billing_daily_usage_baseline_usd)",
                    "{{provider}} baseline",
                ),
            ],
            links=[runbook("BillingDailySpendSpike")],
        ),
        table(
            "Billing sources",
            "Each source: refreshing (1) or failing (0), age of its newest charges, rows rejected by reason so far.",
            "none",
            [
                Prom("max without (instance) (billing_source_up)", instant=True, table=True),
                Prom(
                    "time() - max without (instance) (billing_source_newest_data_timestamp_seconds)",
                    instant=True,
                    table=True,
                ),
                Prom(
                    "sum without (instance, reason) (billing_rows_rejected_total)",
                    instant=True,
                    table=True,
                ),
            ],
            hide=["Time"],
            rename={
                "Value #A": "up",
                "Value #B": "newest data age (s)",
                "Value #C": "rows rejected",
            },
            links=[runbook("BillingSourceStopped"), runbook("BillingSourceFailing")],
            new_row="Sources and records",
            w=12,
        ),
        table(
            "cost_tracking (recorder database)",
            "The spec's cost_tracking rows, written by the billing exporter each refresh: one per provider, category and month.",
            "currencyUSD",
            [
                Sql(
                    "SELECT billing_period_start AS month, service_provider AS provider, service_category AS category,\n"
                    "  round(cost_usd, 2) AS cost_usd, round(projected_monthly_cost, 2) AS projected,\n"
                    "  usage_quantity, usage_unit, cost_notes\n"
                    "FROM cost_tracking\n"
                    "ORDER BY billing_period_start DESC, cost_usd DESC\n"
                    "LIMIT 50"
                )
            ],
            w=12,
        ),
    ],
)
