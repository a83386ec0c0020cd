"""The traffic ladder of the request-based alerts: writes tests/rules/slo_ladder.test.yaml.

Every rung (a few requests an hour to hundreds a second) meets every failure (one stray error,
a 2 % partial failure, 90 % failing) as its own production project, all in one promtool test so
the rules are evaluated once. Six clean hours come first (the history a window reads), then the
failure runs for six hours. Requests arrive evenly and are counted as whole requests; of those
after the failure starts, `fails(k)` says which fail. The expectation table below is written by
hand from the reasoning in alert_rules/config.yaml (slo.evidence, vercel.errors.evidence), never
computed from the rules: `python -m tests.rules.ladder` regenerates the file and a unit test
fails when the committed one differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import yaml

OUT = Path(__file__).with_name("slo_ladder.test.yaml")
CLEAN_MINUTES = 6 * 60
FAILING_MINUTES = 6 * 60

# Requests per minute at each rung.
RUNGS = {"r3h": 3 / 60, "r3m": 3.0, "r1s": 60.0, "r300s": 18000.0}
# How many of the first n requests after the failure starts fail.
FAILURES: dict[str, Callable[[int], int]] = {
    "stray": lambda n: min(n, 1),  # the first one fails, no other
    "partial": lambda n: -(-n // 50),  # 2 %: the 1st, 51st, 101st, ...
    "heavy": lambda n: n - n // 10,  # 90 %: all but every tenth
}

EVERY_ALERT = ("VercelErrorRateHigh", "VercelErrorBudgetBurn")
PAGE, TICKET = ("VercelErrorBudgetBurn", "critical"), ("VercelErrorBudgetBurn", "warning")
RATE_WARN, RATE_CRIT = ("VercelErrorRateHigh", "warning"), ("VercelErrorRateHigh", "critical")

# Minutes after the failure starts → project → the alerts firing then (every other is silent).
# Why each rung does what it does is in alert_rules/config.yaml; in short:
#   stray: one failure never meets an evidence gate of ten, at any traffic.
#   r3h: at most three requests an hour. Nothing judges a 5-minute or 1-hour window; the 6 h
#     pair never holds 20 requests; the ticket (1 d pair) opens once ten requests have failed
#     (~3 h 40 min of heavy failure). A 2 % failure there is one or two requests: silent.
#   r3m: 90 % failing is ~13 failures in 5 minutes: both regional levels and the page within
#     ~9 min, the ticket after its 15-minute hold. 2 %: the page (6 h pair) and the ticket (1 d
#     pair) come once ten requests have failed (~2 h 50 min - 3 h); the regional 5-minute
#     alert never has the evidence.
#   r1s: 2 % is six failures in 5 minutes, under the regional gate; the page is the 1 h pair,
#     whose ratio passes 1.44 % after ~43 minutes; the ticket after ~36.
#   r300s: as r1s with the regional warning (2 % > 1 %) within ~8 minutes.
EXPECTED: dict[int, dict[str, set[tuple[str, str]]]] = {
    -1: {},
    12: {
        "r3m-heavy": {RATE_WARN, RATE_CRIT, PAGE},
        "r1s-heavy": {RATE_WARN, RATE_CRIT, PAGE},
        "r300s-heavy": {RATE_WARN, RATE_CRIT, PAGE},
        "r300s-partial": {RATE_WARN},
    },
    60: {
        "r3m-heavy": {RATE_WARN, RATE_CRIT, PAGE, TICKET},
        "r1s-heavy": {RATE_WARN, RATE_CRIT, PAGE, TICKET},
        "r300s-heavy": {RATE_WARN, RATE_CRIT, PAGE, TICKET},
        "r1s-partial": {PAGE, TICKET},
        "r300s-partial": {RATE_WARN, PAGE, TICKET},
    },
    # The case, three hours in (and twenty minutes, as a count estimated from rates can
    # lag by one request: the eleventh failure, not the tenth, may be what meets the gate).
    200: {
        "r3m-heavy": {RATE_WARN, RATE_CRIT, PAGE, TICKET},
        "r1s-heavy": {RATE_WARN, RATE_CRIT, PAGE, TICKET},
        "r300s-heavy": {RATE_WARN, RATE_CRIT, PAGE, TICKET},
        "r3m-partial": {PAGE, TICKET},
        "r1s-partial": {PAGE, TICKET},
        "r300s-partial": {RATE_WARN, PAGE, TICKET},
    },
    360: {
        "r3h-heavy": {TICKET},
        "r3m-heavy": {RATE_WARN, RATE_CRIT, PAGE, TICKET},
        "r1s-heavy": {RATE_WARN, RATE_CRIT, PAGE, TICKET},
        "r300s-heavy": {RATE_WARN, RATE_CRIT, PAGE, TICKET},
        "r3m-partial": {PAGE, TICKET},
        "r1s-partial": {PAGE, TICKET},
        "r300s-partial": {RATE_WARN, PAGE, TICKET},
    },
}

SERIES = (
    'vercel_requests_total{{job="vercel",instance="vercel:9703",project="{project}",'
    'environment="production",region="iad1",status_class="{status}",cache="MISS",'
    'path_type="func"}}'
)


def counts(per_minute: float, failing: Callable[[int], int]) -> tuple[list[int], list[int]]:
    """Cumulative ok and failed requests at each minute: requests arrive evenly, whole."""
    before = math.floor(per_minute * CLEAN_MINUTES + 1e-9)
    ok, failed = [], []
    for minute in range(CLEAN_MINUTES + FAILING_MINUTES + 1):
        total = math.floor(per_minute * minute + 1e-9)
        bad = failing(max(0, total - before))
        ok.append(total - bad)
        failed.append(bad)
    return ok, failed


def encode(values: list[int]) -> str:
    """promtool's expanding notation: runs of equal steps as `start+stepxN`."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        step = values[i + 1] - values[i] if i + 1 < len(values) else 0
        while j + 1 < len(values) and values[j + 1] - values[j] == step:
            j += 1
        out.append(f"{values[i]}+{step}x{j - i}" if j > i else str(values[i]))
        i = j + 1
    return " ".join(out)


def document() -> dict[str, object]:
    series = []
    for rung, per_minute in RUNGS.items():
        for failure, fails in FAILURES.items():
            project = f"{rung}-{failure}"
            ok, failed = counts(per_minute, fails)
            for status, values in (("2xx", ok), ("5xx", failed)):
                series.append(
                    {
                        "series": SERIES.format(project=project, status=status),
                        "values": encode(values),
                    }
                )
    firing = "|".join(EVERY_ALERT)
    query = f'sum by (alertname, severity, project) (ALERTS{{alertstate="firing",alertname=~"{firing}"}})'
    checks = []
    for after, projects in EXPECTED.items():
        checks.append(
            {
                "expr": query,
                "eval_time": f"{CLEAN_MINUTES + after}m",
                "exp_samples": [
                    {
                        "labels": f'{{alertname="{alert}",project="{project}",severity="{sev}"}}',
                        "value": 1,
                    }
                    for project, alerts in sorted(projects.items())
                    for alert, sev in sorted(alerts)
                ],
            }
        )
    return {
        "rule_files": [
            "../../alert_rules/generated/vercel.rules.yml",
            "../../alert_rules/generated/vercel.alerts.yml",
            "../../alert_rules/generated/slo.rules.yml",
            "../../alert_rules/generated/slo.alerts.yml",
        ],
        "evaluation_interval": "30s",
        "tests": [
            {
                "name": "traffic ladder: which request-based alerts fire at each rung and failure",
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": checks,
            }
        ],
    }


def render() -> str:
    head = (
        "# Generated by `python -m tests.rules.ladder` (tests/rules/ladder.py): the traffic ladder of\n"
        "# the request-based alerts. Edit the generator's expectation table, not this file.\n"
    )
    return head + yaml.safe_dump(document(), sort_keys=False, width=200)


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
