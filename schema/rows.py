"""Typed rows for the spec's tables (and the recorder's bookkeeping tables beside them).

Parsers produce these; `schema.writes` puts them into PostgreSQL. Field names are the columns'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

SEVERITIES = ("info", "warning", "error", "critical")
ENVIRONMENTS = ("production", "staging", "preview")
DEPLOYMENT_STATUSES = ("in_progress", "success", "failed", "rolled_back")


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One alert instance in infrastructure_alerts (`alert_id` = fingerprint and start)."""

    alert_id: str
    alert_type: str
    severity: str
    service_name: str
    region: str | None
    alert_title: str
    alert_description: str
    metric_threshold: float | None
    current_metric_value: float | None
    alert_rule: dict[str, Any]
    triggered_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class Notification:
    """One Alertmanager notification: its raw log row and the alert rows it carries."""

    receiver: str
    group_key: str
    status: str
    truncated_alerts: int
    alerts: tuple[AlertRow, ...]
    raw: dict[str, Any]
    rejected: tuple[RejectedAlert, ...] = ()
    # The notification came from a receiver that also notifies a person (Slack, PagerDuty), not
    # from the record-only mirror: its alerts get notification_sent (docs/alert-routing.md).
    notified: bool = False


@dataclass(frozen=True, slots=True)
class DeploymentEvent:
    """One provider event about a deployment, applied to deployment_history."""

    provider: str
    delivery_id: str
    event: str
    deployment_id: str
    environment: str
    git_branch: str
    git_commit_hash: str
    status: str  # one of DEPLOYMENT_STATUSES
    deployment_url: str | None
    error_message: str | None
    at: datetime  # when this event happened
    started_at: datetime | None  # when the deployment was created, if the event says


@dataclass(frozen=True, slots=True)
class LatestDeployment:
    """The newest successful deployment of an environment (what deploy-aware alerts name)."""

    environment: str
    at: datetime
    commit: str
    branch: str


@dataclass(frozen=True, slots=True)
class CostRow:
    """One row of the spec's cost_tracking: a provider's service category over a billing period
    (a UTC month; `billing_period_end` is exclusive, as in FOCUS)."""

    service_provider: str
    service_category: str
    billing_period_start: date
    billing_period_end: date
    usage_quantity: Decimal
    usage_unit: str
    cost_usd: Decimal
    projected_monthly_cost: Decimal | None
    usage_tier: str | None
    cost_notes: str


@dataclass(frozen=True, slots=True)
class RejectedAlert:
    """An alert of a notification that cannot be stored, kept in alert_dead_letters."""

    index: int
    reason: str
    detail: str
    alert: Any  # the alert as received, scrubbed of unstorable characters


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of infrastructure_audit_log: who did what to which row, before and after.

    `actor_user_id` must be the caller's auth.uid(): the table's INSERT policy refuses anything
    else. `actor_machine` names the machine token when `actor_kind` is 'machine'."""

    actor_user_id: UUID
    actor_kind: str  # 'jwt', 'machine', or 'system' (api/escalation.py; migration 0010)
    actor_machine: str | None
    action: str
    target_table: str
    target_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
