"""Variables and values every dashboard shares, read from the same config as the rules."""

from __future__ import annotations

from typing import Any

from alert_rules.build import load_config
from dashboards.lib import Var

RULES: dict[str, Any] = load_config()
SLO_TARGET: float = float(RULES["slo"]["availability_target"])
BUDGET: float = 1 - SLO_TARGET
SLO_WINDOWS: list[str] = list(RULES["slo"]["windows"])
PAGE_BURN: float = float(RULES["slo"]["page"][0]["factor"])
TICKET_BURN: float = float(RULES["slo"]["ticket"][0]["factor"])
V = RULES["vercel"]
U = RULES["uptime"]
B = RULES["billing"]
# Cost panels: green under the warning share of the budget, orange to 100 %, red past it.
BUDGET_STEPS = [
    (None, "green"),
    (B["budget"]["warning_ratio"], "orange"),
    (B["budget"]["critical_ratio"], "red"),
]
COST_PER_USER_STEPS = [(None, "green"), (B["cost_per_user"]["max_usd"], "red")]

ENVIRONMENT = Var(
    "environment",
    "Environment",
    "production,preview",
    kind="custom",
    include_all=False,
    multi=False,
    default="production",
)
PROJECT = Var("project", "Vercel project", "label_values(vercel_requests_total, project)")
VERCEL_REGION = Var(
    "vercel_region",
    "Vercel region",
    'label_values(vercel_requests_total{project=~"$project"}, region)',
)
PROBE_REGION = Var("region", "Probe region", "label_values(uptime_probe_success, region)")
TARGET = Var("target", "Target", "label_values(uptime_target_info, target)")

TAGS = ["wsinfra"]

# Threshold steps shared by every panel that shows the same figure.
ERROR_STEPS = [
    (None, "green"),
    (V["errors"]["warning_ratio"], "orange"),
    (V["errors"]["critical_ratio"], "red"),
]
PAGE_STEPS = [(None, "green"), (V["page_load"]["p95_seconds"], "red")]
API_STEPS = [(None, "green"), (V["api_latency"]["p50_seconds"], "red")]
CACHE_STEPS = [(None, "red"), (V["cache"]["min_hit_ratio"], "green")]
PROBE_TIME_STEPS = [
    (None, "green"),
    (U["response_time"]["warning_seconds"], "orange"),
    (U["response_time"]["critical_seconds"], "red"),
]
