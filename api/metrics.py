"""The API's own metrics: direct instrumentation of requests, refusals and Alertmanager calls,
plus `api_up` and `api_build_info` at each scrape. Every label has a closed value set, and every
child exists from the start (rate() works from the first scrape).

    # HELP api_requests_total HTTP requests answered, by route template, method and status code.
    api_requests_total{code="200",method="GET",route="/api/infrastructure/alerts"} 12.0
    api_requests_rejected_total{reason="expired"} 3.0
    api_up 1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.core import Metric

from api.alertmanager import OPERATIONS
from api.errors import REASONS
from common.exporter import self_metrics

# `_created` series double every counter's output and nothing reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Methods outside this set are counted as "other": a client must not be able to mint labels.
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
# The outcome label of api_pagerduty_webhooks_total: its whole value set.
PAGERDUTY_OUTCOMES = (
    "applied",
    "unmatched",
    "duplicate",
    "ignored",
    "unauthorized",
    "invalid",
    "failed",
)
# The route label of a request no route matched.
UNMATCHED = "unmatched"
# The result label of api_escalations_total (api/escalation.py): its whole value set.
ESCALATION_RESULTS = ("escalated", "ended", "failed")
# The operation label of api_prometheus_errors_total (api.prometheus.Prometheus's two calls).
PROMETHEUS_OPERATIONS = ("query", "query_range")


class Metrics:
    def __init__(self, registry: CollectorRegistry, ready: Callable[[], bool]) -> None:
        self.requests = Counter(
            "api_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "code"],
            registry=registry,
        )
        self.rejected = Counter(
            "api_requests_rejected",
            "Requests refused or failed, by reason (api/errors.py lists them with their status).",
            ["reason"],
            registry=registry,
        )
        self.alertmanager_errors = Counter(
            "api_alertmanager_errors",
            "Calls to Alertmanager that failed (unreachable, 5xx or refused), by operation.",
            ["operation"],
            registry=registry,
        )
        self.compensations = Counter(
            "api_alertmanager_compensations",
            "Alertmanager actions undone because the database commit after them failed, by "
            "whether the undo worked (failed: a silence or incident Alertmanager has and the "
            "database does not; see the log).",
            ["result"],
            registry=registry,
        )
        self.pagerduty_webhooks = Counter(
            "api_pagerduty_webhooks",
            "PagerDuty v3 webhook deliveries, by outcome: applied (written to matched alerts), "
            "unmatched (no active alert of the incident), duplicate (event already processed), "
            "ignored (an event type not acted on), unauthorized (unsigned, a bad signature, or "
            "webhooks not configured), "
            "invalid (a body that cannot be used), failed (database or Alertmanager trouble; "
            "PagerDuty retries).",
            ["outcome"],
            registry=registry,
        )
        self.prometheus_errors = Counter(
            "api_prometheus_errors",
            "Calls to Prometheus that failed (unreachable, timed out, 5xx, or a query it "
            "refused), by operation; the request was answered 503 prometheus_unavailable.",
            ["operation"],
            registry=registry,
        )
        for op in PROMETHEUS_OPERATIONS:
            self.prometheus_errors.labels(op)
        for outcome in PAGERDUTY_OUTCOMES:
            self.pagerduty_webhooks.labels(outcome)
        for reason in REASONS:
            self.rejected.labels(reason)
        for op in OPERATIONS:
            self.alertmanager_errors.labels(op)
        self.escalations = Counter(
            "api_escalations",
            "Critical alerts escalated to the second level (escalated), escalations ended because "
            "the alert was acknowledged or resolved (ended), and escalation steps that failed "
            "(failed: Alertmanager or the database; nothing was marked, the next tick retries).",
            ["result"],
            registry=registry,
        )
        for result in ESCALATION_RESULTS:
            self.escalations.labels(result)
        self.reconciled = Counter(
            "api_reconciled",
            "Reconciliation with Alertmanager (api/reconcile.py): open alert rows resolved because "
            "Alertmanager no longer held their alert (resolved), open manual incidents it lost and "
            "was sent again (reposted), and ticks that failed (failed: retried next tick).",
            ["result"],
            registry=registry,
        )
        for result in ("resolved", "reposted", "failed"):
            self.reconciled.labels(result)
        for result in ("undone", "failed"):
            self.compensations.labels(result)
        registry.register(_State(ready))


class _State:
    """api_up and api_build_info, computed at each scrape."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        self.ready = ready

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self_metrics(
            "api",
            self.ready(),
            "1 when the database is reachable, migrated for the API, and machine users exist.",
        )


def method_label(method: str) -> str:
    return method if method in METHODS else "other"
