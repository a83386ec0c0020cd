"""Variables and values every dashboard shares, read from the same checked config as the rules
(alert_rules/config.py, through dashboards/rules.py): no threshold is copied here."""

from __future__ import annotations

from alert_rules.config import AlertRulesConfig, prom_duration
from dashboards.lib import Var
from dashboards.rules import rules

RULES: AlertRulesConfig = rules()
SLO_TARGET: float = float(RULES.slo.availability_target)
BUDGET: float = 1 - SLO_TARGET
SLO_WINDOWS: list[str] = [prom_duration(w) for w in RULES.slo.windows]
PAGE_BURN: float = float(RULES.slo.page[0].factor)
TICKET_BURN: float = float(RULES.slo.ticket[0].factor)
V = RULES.vercel
U = RULES.uptime
B = RULES.billing
S = RULES.supabase
# The recorded CDN hit ratio is named after its window (vercel.rules: ratio_rate<window>).
CACHE_WINDOW = prom_duration(V.cache.window)
CACHE_HIT_RATIO = f"project_region:vercel_cache_hits:ratio_rate{CACHE_WINDOW}"
# Cost panels: green under the warning share of the budget, orange to 100 %, red past it.
BUDGET_STEPS = [
    (None, "green"),
    (B.budget.warning_ratio, "orange"),
    (B.budget.critical_ratio, "red"),
]
COST_PER_USER_STEPS = [(None, "green"), (B.cost_per_user.max_usd, "red")]

_SPOKEN = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def spoken(seconds: float) -> str:
    """A duration in words for descriptions, in its largest whole unit: "30 minutes", "1 day"."""
    for unit, size in _SPOKEN:
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}" + ("" if count == 1 else "s")
    return f"{seconds:g} seconds"


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
    (V.errors.warning_ratio, "orange"),
    (V.errors.critical_ratio, "red"),
]
PAGE_STEPS = [(None, "green"), (V.page_load.p95_seconds, "red")]
API_STEPS = [(None, "green"), (V.api_latency.p50_seconds, "red")]
CACHE_STEPS = [(None, "red"), (V.cache.min_hit_ratio, "green")]
PROBE_TIME_STEPS = [
    (None, "green"),
    (U.response_time.warning_seconds, "orange"),
    (U.response_time.critical_seconds, "red"),
]
