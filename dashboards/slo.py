"""SLOs and error budgets: budget left, burn rates per window, the month's SLA report."""

from __future__ import annotations

from typing import Any

from alert_rules.config import BurnRate, prom_duration
from dashboards.common import (
    BUDGET,
    PAGE_BURN,
    PROJECT,
    RULES,
    SLO_TARGET,
    SLO_WINDOWS,
    TAGS,
    TARGET,
    TICKET_BURN,
)
from dashboards.lib import Dashboard, Panel, Prom, Query, runbook, stat, table, timeseries

BURN_STEPS = [(None, "green"), (1, "yellow"), (TICKET_BURN, "orange"), (PAGE_BURN, "red")]
MINUTES_30D = 30 * 24 * 60


def _windows(burn: BurnRate) -> str:
    return f"{prom_duration(burn.long)} and {prom_duration(burn.short)}"


EVIDENCE = RULES.slo.evidence
LONG_WINDOWS = list(
    dict.fromkeys(prom_duration(b.long) for b in (*RULES.slo.page, *RULES.slo.ticket))
)


def _below(limit: int, text: str) -> list[dict[str, Any]]:
    """A value mapping: counts under `limit` read as `text` (the burn alert cannot judge them)."""
    return [
        {
            "type": "range",
            "options": {"from": 0, "to": limit - 0.001, "result": {"text": text, "color": "text"}},
        }
    ]


def _evidence_tables() -> list[Panel]:
    """Per project and long window, the counts the burn alerts' evidence gate reads."""

    def queries(metric: str) -> list[Query]:
        return [
            Prom(f'{metric}{w}{{project=~"$project"}}', instant=True, table=True)
            for w in LONG_WINDOWS
        ]

    rename = {f"Value #{chr(ord('A') + i)}": f"in {w}" for i, w in enumerate(LONG_WINDOWS)}
    gate = f"A burn-rate pair judges its long window only with at least {EVIDENCE.min_failed} failed and {EVIDENCE.min_requests} requests in it (slo.evidence in alert_rules/config.yaml), so a quiet project neither pages on one stray error nor goes unpaged however badly it fails."
    return [
        table(
            "Requests per window: enough traffic to judge?",
            f"Production requests of each project in each burn window. {gate} Under {EVIDENCE.min_requests}: too little traffic to judge.",
            "short",
            queries("project:vercel_requests:increase"),
            hide=["Time"],
            rename=rename,
            mappings=_below(EVIDENCE.min_requests, "too little traffic to judge"),
            links=[runbook("VercelErrorBudgetBurn")],
            w=12,
            h=6,
        ),
        table(
            "Failed requests per window: enough evidence to page?",
            f"Failed production requests (server errors) of each project in each burn window. {gate} Under {EVIDENCE.min_failed}: the window cannot alert, whatever its ratio.",
            "short",
            queries("project:vercel_request_errors:increase"),
            hide=["Time"],
            rename=rename,
            mappings=_below(EVIDENCE.min_failed, f"under {EVIDENCE.min_failed}: not judged"),
            links=[runbook("VercelErrorBudgetBurn")],
            w=12,
            h=6,
        ),
    ]


PAGE_WINDOWS = _windows(RULES.slo.page[0])
TICKET_WINDOWS = _windows(RULES.slo.ticket[0])

DASHBOARD = Dashboard(
    uid="wsinfra-slo",
    title="wsinfra / SLOs and error budgets",
    description=f"The {SLO_TARGET:.1%} availability objective, measured by uptime probes per target and by production requests per Vercel project: budget left, burn rates per window, and the 30-day SLA report.",
    tags=[*TAGS, "slo"],
    time_from="now-7d",
    variables=[TARGET, PROJECT],
    panels=[
        stat(
            "Uptime budget left (worst target)",
            "Error budget left over 30 days for the selected target with the least left. 100 % = untouched; 0 = spent; negative = SLO missed.",
            "percentunit",
            [
                Prom(
                    'min(target:uptime_error_budget_remaining:ratio30d{target=~"$target"})',
                    instant=True,
                )
            ],
            thresholds=[(None, "red"), (0.25, "orange"), (0.5, "green")],
            links=[runbook("UptimeErrorBudgetBurn")],
            w=6,
            new_row="Budget",
        ),
        stat(
            "Request budget left (worst project)",
            "Error budget left over 30 days for production requests of the selected Vercel projects.",
            "percentunit",
            [
                Prom(
                    'min(project:vercel_error_budget_remaining:ratio30d{project=~"$project"})',
                    instant=True,
                )
            ],
            thresholds=[(None, "red"), (0.25, "orange"), (0.5, "green")],
            links=[runbook("VercelErrorBudgetBurn")],
            w=6,
        ),
        timeseries(
            "Budget left over time",
            "30-day error budget left, per target and per project: a steady line is healthy, a cliff is an incident.",
            "percentunit",
            [
                Prom(
                    'target:uptime_error_budget_remaining:ratio30d{target=~"$target"}',
                    "uptime {{target}}",
                ),
                Prom(
                    'project:vercel_error_budget_remaining:ratio30d{project=~"$project"}',
                    "requests {{project}}",
                ),
            ],
            thresholds=[(None, "red"), (0, "orange"), (0.5, "green")],
            w=12,
            h=8,
        ),
        timeseries(
            "Uptime burn rate per window (worst target)",
            f"Error ratio per window divided by the budget ({BUDGET:g}): 1 spends the 30-day budget in 30 days. Pages above {PAGE_BURN:g} ({PAGE_WINDOWS}), tickets above {TICKET_BURN:g} ({TICKET_WINDOWS}).",
            "none",
            [
                Prom(
                    f'max(target:uptime_probe_errors:ratio_rate{w}{{target=~"$target"}}) / {BUDGET:g}',
                    w,
                )
                for w in SLO_WINDOWS
            ],
            thresholds=BURN_STEPS,
            links=[runbook("UptimeErrorBudgetBurn")],
            new_row="Burn rates",
        ),
        timeseries(
            "Request burn rate per window (worst project)",
            f"Production requests' server-error ratio per window divided by the budget ({BUDGET:g}); the same paging thresholds as the uptime SLO.",
            "none",
            [
                Prom(
                    f'max(project:vercel_request_errors:ratio_rate{w}{{project=~"$project"}}) / {BUDGET:g}',
                    w,
                )
                for w in SLO_WINDOWS
            ],
            thresholds=BURN_STEPS,
            links=[runbook("VercelErrorBudgetBurn")],
        ),
        *_evidence_tables(),
        table(
            "SLA report: uptime targets, last 30 days",
            f"Per target: availability over 30 days (best probe region), minutes of failure it amounts to, and budget left. SLO {SLO_TARGET:.1%} = {BUDGET * MINUTES_30D:.0f} minutes a month.",
            "percentunit",
            [
                Prom(
                    '1 - target:uptime_probe_errors:ratio_rate30d{target=~"$target"}',
                    instant=True,
                    table=True,
                ),
                Prom(
                    f'target:uptime_probe_errors:ratio_rate30d{{target=~"$target"}} * {MINUTES_30D}',
                    instant=True,
                    table=True,
                ),
                Prom(
                    'target:uptime_error_budget_remaining:ratio30d{target=~"$target"}',
                    instant=True,
                    table=True,
                ),
            ],
            thresholds=[(None, "red"), (SLO_TARGET, "green")],
            hide=["Time"],
            rename={
                "Value #A": "availability",
                "Value #B": "failed minutes",
                "Value #C": "budget left",
            },
            new_row="SLA report",
            w=14,
        ),
        table(
            "SLA report: Vercel projects, last 30 days",
            "Per project: share of production requests without a server error over 30 days, and budget left.",
            "percentunit",
            [
                Prom(
                    '1 - project:vercel_request_errors:ratio_rate30d{project=~"$project"}',
                    instant=True,
                    table=True,
                ),
                Prom(
                    'project:vercel_error_budget_remaining:ratio30d{project=~"$project"}',
                    instant=True,
                    table=True,
                ),
            ],
            thresholds=[(None, "red"), (SLO_TARGET, "green")],
            hide=["Time"],
            rename={"Value #A": "availability", "Value #B": "budget left"},
            w=10,
        ),
    ],
)
