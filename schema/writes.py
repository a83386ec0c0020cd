"""The typed writes into the spec's tables: every INSERT and UPDATE that wsinfra runs is here.

Each function takes an open connection and runs inside the caller's transaction (or opens one
where it says so), so a caller composes several writes into one atomic unit.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from schema.rows import (
    AlertRow,
    AuditEntry,
    CostRow,
    DeploymentEvent,
    LatestDeployment,
    Notification,
)

_LOG_NOTIFICATION = """
INSERT INTO alertmanager_notifications (receiver, group_key, status, truncated_alerts, alert_count, payload)
VALUES (%s, %s, %s, %s, %s, %s)
"""

# One row per alert instance. Duplicates (retries, HA pairs, repeat_interval) update the same
# row; the first resolution time wins, and a late "firing" never un-resolves an alert.
# notification_sent is sticky: true once any notification of the alert came from a receiver
# that also notifies a person (docs/alert-routing.md); the record-only mirror never clears it.
_UPSERT_ALERT = """
INSERT INTO infrastructure_alerts (
    alert_id, alert_type, severity, service_name, region, alert_title, alert_description,
    metric_threshold, current_metric_value, alert_rule, notification_sent, triggered_at, resolved_at
) VALUES (
    %(alert_id)s, %(alert_type)s, %(severity)s, %(service_name)s, %(region)s, %(alert_title)s,
    %(alert_description)s, %(metric_threshold)s, %(current_metric_value)s, %(alert_rule)s,
    %(notification_sent)s, %(triggered_at)s, %(resolved_at)s
)
ON CONFLICT (alert_id) DO UPDATE SET
    resolved_at = COALESCE(infrastructure_alerts.resolved_at, EXCLUDED.resolved_at),
    alert_description = CASE WHEN infrastructure_alerts.resolved_at IS NULL
        THEN EXCLUDED.alert_description ELSE infrastructure_alerts.alert_description END,
    current_metric_value = CASE WHEN infrastructure_alerts.resolved_at IS NULL
        THEN COALESCE(EXCLUDED.current_metric_value, infrastructure_alerts.current_metric_value)
        ELSE infrastructure_alerts.current_metric_value END,
    alert_rule = EXCLUDED.alert_rule,
    notification_sent = infrastructure_alerts.notification_sent OR EXCLUDED.notification_sent
"""

_CLAIM_DELIVERY = """
INSERT INTO webhook_deliveries (provider, delivery_id, event) VALUES (%s, %s, %s)
ON CONFLICT DO NOTHING RETURNING 1
"""

# A deployment moves forward only: a late or repeated in_progress never reverts an outcome,
# rolled_back is final, and a promotion to production is never undone by an older event.
_UPSERT_DEPLOYMENT = """
INSERT INTO deployment_history AS d (
    deployment_id, environment, git_branch, git_commit_hash, deployment_status,
    deployment_url, error_message, deployed_at, completed_at, build_duration_ms, went_live_at
) VALUES (
    %(deployment_id)s, %(environment)s, %(git_branch)s, %(git_commit_hash)s, %(status)s::VARCHAR,
    %(deployment_url)s, %(error_message)s, COALESCE(%(started_at)s::TIMESTAMPTZ, %(at)s::TIMESTAMPTZ),
    CASE WHEN %(status)s::VARCHAR <> 'in_progress' THEN %(at)s::TIMESTAMPTZ END,
    CASE WHEN %(status)s::VARCHAR <> 'in_progress' AND %(started_at)s::TIMESTAMPTZ < %(at)s::TIMESTAMPTZ
         THEN (EXTRACT(EPOCH FROM %(at)s::TIMESTAMPTZ - %(started_at)s::TIMESTAMPTZ) * 1000)::INTEGER END,
    CASE WHEN %(status)s::VARCHAR = 'success' THEN %(at)s::TIMESTAMPTZ END
)
ON CONFLICT (deployment_id) DO UPDATE SET
    environment = CASE WHEN EXCLUDED.environment = 'production' THEN 'production' ELSE d.environment END,
    git_branch = CASE WHEN d.git_branch = 'unknown' THEN EXCLUDED.git_branch ELSE d.git_branch END,
    git_commit_hash = CASE WHEN d.git_commit_hash = 'unknown' THEN EXCLUDED.git_commit_hash ELSE d.git_commit_hash END,
    deployment_url = COALESCE(EXCLUDED.deployment_url, d.deployment_url),
    error_message = COALESCE(EXCLUDED.error_message, d.error_message),
    deployed_at = LEAST(d.deployed_at, EXCLUDED.deployed_at),
    deployment_status = CASE
        WHEN d.deployment_status = 'rolled_back' THEN 'rolled_back'
        WHEN EXCLUDED.deployment_status = 'in_progress' THEN d.deployment_status
        ELSE EXCLUDED.deployment_status END,
    completed_at = COALESCE(d.completed_at, EXCLUDED.completed_at),
    build_duration_ms = CASE
        WHEN COALESCE(d.completed_at, EXCLUDED.completed_at) > LEAST(d.deployed_at, EXCLUDED.deployed_at)
        THEN (EXTRACT(EPOCH FROM COALESCE(d.completed_at, EXCLUDED.completed_at)
                                - LEAST(d.deployed_at, EXCLUDED.deployed_at)) * 1000)::INTEGER
        END,
    -- A promotion (or a rollback by promotion) makes an older deployment the live one again.
    went_live_at = CASE
        WHEN d.deployment_status = 'rolled_back' THEN d.went_live_at
        ELSE GREATEST(d.went_live_at, EXCLUDED.went_live_at) END
"""

# What serves each environment now: the successful deployment that went live last (a promoted
# or rolled-back-to older deployment counts from its promotion, not its build).
_DEPLOY_SUMMARY = """
SELECT DISTINCT ON (environment) environment, went_live_at, git_commit_hash, git_branch
FROM deployment_history
WHERE deployment_status = 'success' AND went_live_at IS NOT NULL
ORDER BY environment, went_live_at DESC
"""


async def log_notification(conn: psycopg.AsyncConnection[Any], n: Notification) -> None:
    """Append the notification as received to alertmanager_notifications."""
    await conn.execute(
        _LOG_NOTIFICATION,
        (n.receiver, n.group_key, n.status, n.truncated_alerts, len(n.alerts), Jsonb(n.raw)),
    )


def _alert_params(a: AlertRow, notified: bool) -> dict[str, Any]:
    return {**asdict(a), "alert_rule": Jsonb(a.alert_rule), "notification_sent": notified}


# The same upsert for a whole notification in one statement: the rows travel as arrays (in
# binary, %b: the text format escapes every element through a regex, which costs more than the
# insert itself at a thousand alerts) and are unnested in alert_id order, so concurrent writers
# lock rows in the same order.
_UPSERT_ALERTS_BULK = (
    _UPSERT_ALERT.split(") VALUES (")[0]
    + """)
SELECT a.alert_id, a.alert_type, a.severity, a.service_name, a.region, a.alert_title,
       a.alert_description, a.metric_threshold, a.current_metric_value, a.alert_rule, %b::boolean,
       a.triggered_at, a.resolved_at
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::float8[], %b::float8[], %b::jsonb[], %b::timestamptz[], %b::timestamptz[])
     AS a(alert_id, alert_type, severity, service_name, region, alert_title, alert_description,
          metric_threshold, current_metric_value, alert_rule, triggered_at, resolved_at)
ORDER BY a.alert_id
ON CONFLICT"""
    + _UPSERT_ALERT.split("ON CONFLICT", 1)[1]
)


# From this many alerts a notification is written with the one-statement bulk upsert.
BULK_FROM = 8


async def upsert_alerts(
    conn: psycopg.AsyncConnection[Any], alerts: tuple[AlertRow, ...], *, notified: bool = False
) -> None:
    """Upsert alert instances in alert_id order: two notifications carrying the same alerts in
    different orders then lock their rows in the same order and cannot deadlock. `notified`: the
    notification also went to a person (sets notification_sent; False never clears it)."""
    if not alerts:
        return
    ordered = sorted(alerts, key=lambda a: a.alert_id)
    if len(ordered) < BULK_FROM or len({a.alert_id for a in ordered}) != len(ordered):
        # A few alerts go row by row (cheaper than building arrays), and so does a notification
        # naming an instance twice (never seen from Alertmanager): one statement cannot update a
        # row twice.
        async with conn.cursor() as cur:
            await cur.executemany(_UPSERT_ALERT, [_alert_params(a, notified) for a in ordered])
        return
    await conn.execute(
        _UPSERT_ALERTS_BULK,
        (
            notified,
            [a.alert_id for a in ordered],
            [a.alert_type for a in ordered],
            [a.severity for a in ordered],
            [a.service_name for a in ordered],
            [a.region for a in ordered],
            [a.alert_title for a in ordered],
            [a.alert_description for a in ordered],
            [a.metric_threshold for a in ordered],
            [a.current_metric_value for a in ordered],
            [Jsonb(a.alert_rule) for a in ordered],
            [a.triggered_at for a in ordered],
            [a.resolved_at for a in ordered],
        ),
    )


async def claim_delivery(
    conn: psycopg.AsyncConnection[Any], provider: str, delivery: str, event: str
) -> bool:
    """Record a provider's delivery id; False when it was processed before (a replay)."""
    cur = await conn.execute(_CLAIM_DELIVERY, (provider, delivery, event))
    return await cur.fetchone() is not None


async def upsert_deployment(conn: psycopg.AsyncConnection[Any], event: DeploymentEvent) -> None:
    await conn.execute(_UPSERT_DEPLOYMENT, asdict(event))


async def deployment_summary(
    conn: psycopg.AsyncConnection[Any],
) -> dict[str, LatestDeployment]:
    """The newest successful deployment of each environment."""
    cur = await conn.execute(_DEPLOY_SUMMARY)
    return {r[0]: LatestDeployment(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()}


_UPSERT_COST = """
INSERT INTO cost_tracking (
    service_provider, service_category, billing_period_start, billing_period_end, usage_quantity,
    usage_unit, cost_usd, projected_monthly_cost, usage_tier, cost_notes
) VALUES (
    %(service_provider)s, %(service_category)s, %(billing_period_start)s, %(billing_period_end)s,
    %(usage_quantity)s, %(usage_unit)s, %(cost_usd)s, %(projected_monthly_cost)s, %(usage_tier)s,
    %(cost_notes)s
)
ON CONFLICT (service_provider, service_category, billing_period_start, billing_period_end) DO UPDATE SET
    usage_quantity = EXCLUDED.usage_quantity,
    usage_unit = EXCLUDED.usage_unit,
    cost_usd = EXCLUDED.cost_usd,
    projected_monthly_cost = EXCLUDED.projected_monthly_cost,
    usage_tier = EXCLUDED.usage_tier,
    cost_notes = EXCLUDED.cost_notes,
    recorded_at = now()
"""

# A category restated away (its charges moved or were credited out of existence) must not
# linger: the period's rows for that provider become exactly what was written.
_DELETE_STALE_COSTS = """
DELETE FROM cost_tracking
WHERE service_provider = %s AND billing_period_start = %s AND billing_period_end = %s
  AND NOT (service_category = ANY(%s))
"""


async def write_costs(
    conn: psycopg.AsyncConnection[Any],
    periods: list[tuple[date, date]],
    providers: list[str],
    rows: list[CostRow],
) -> None:
    """Make cost_tracking hold exactly `rows` for these periods and providers, in one transaction."""
    async with conn.transaction(), conn.cursor() as cur:
        for start, end in periods:
            for provider in providers:
                cats = [
                    r.service_category
                    for r in rows
                    if r.service_provider == provider and r.billing_period_start == start
                ]
                await cur.execute(_DELETE_STALE_COSTS, (provider, start, end, cats))
        if rows:
            await cur.executemany(_UPSERT_COST, [asdict(r) for r in rows])


_DEAD_LETTER = """
INSERT INTO alert_dead_letters (receiver, group_key, alert_index, reason, detail, alert)
VALUES (%s, %s, %s, %s, %s, %s)
"""


async def dead_letter_alerts(conn: psycopg.AsyncConnection[Any], n: Notification) -> None:
    """Keep a notification's unstorable alerts, with their reasons, in alert_dead_letters."""
    if not n.rejected:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            _DEAD_LETTER,
            [
                (n.receiver, n.group_key, r.index, r.reason, r.detail, Jsonb(r.alert))
                for r in n.rejected
            ],
        )


_ADVANCE_JOURNAL = """
INSERT INTO recorder_journal_position (journal_id, applied_seq) VALUES (%s, %s)
ON CONFLICT (journal_id) DO UPDATE SET applied_seq = EXCLUDED.applied_seq, updated_at = now()
WHERE recorder_journal_position.applied_seq < EXCLUDED.applied_seq
RETURNING 1
"""


async def advance_journal(conn: psycopg.AsyncConnection[Any], journal_id: str, seq: int) -> bool:
    """Claim journal record `seq` inside the caller's transaction; False when it was applied
    before (the caller then rolls back and skips it)."""
    cur = await conn.execute(_ADVANCE_JOURNAL, (journal_id, seq))
    return await cur.fetchone() is not None


async def journal_position(conn: psycopg.AsyncConnection[Any], journal_id: str) -> int:
    cur = await conn.execute(
        "SELECT applied_seq FROM recorder_journal_position WHERE journal_id = %s", (journal_id,)
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


# --- The operator API's writes (api/): run as the caller, under row-level security ----------
#
# Each runs inside a transaction in which the API has done SET LOCAL ROLE authenticated and set
# request.jwt.claims, so auth.uid() is the caller and the spec's policies decide. A row the
# policies hide is not there for these statements: they return None, never raise.

_LOCK_ALERT = """
SELECT to_jsonb(a) FROM infrastructure_alerts AS a WHERE a.id = %s FOR UPDATE
"""


async def lock_alert(conn: psycopg.AsyncConnection[Any], alert_id: UUID) -> dict[str, Any] | None:
    """The alert row as JSON, locked until the transaction ends (the `before` of a write); None
    when there is no such row or the caller may not see it."""
    cur = await conn.execute(_LOCK_ALERT, (alert_id,))
    row = await cur.fetchone()
    return None if row is None else dict(row[0])


# Several rows at once (a PagerDuty incident's): locked in alert_id order, the order the
# recorder's upserts lock them in (upsert_alerts), so the two can never deadlock.
_LOCK_ALERTS = """
SELECT a.id, to_jsonb(a) FROM infrastructure_alerts AS a WHERE a.id = ANY(%s)
ORDER BY a.alert_id, a.id FOR UPDATE
"""


async def lock_alerts(
    conn: psycopg.AsyncConnection[Any], alert_ids: list[UUID]
) -> list[tuple[UUID, dict[str, Any]]]:
    """(id, row as JSON) of each of these alerts the caller may see, locked until the
    transaction ends, in the recorder's lock order."""
    cur = await conn.execute(_LOCK_ALERTS, (alert_ids,))
    return [(UUID(str(r[0])), dict(r[1])) for r in await cur.fetchall()]


# The acknowledger is whoever the claims say (auth.uid()), not a value the API passes in; only
# a PagerDuty acknowledgement names someone else: the responder, whose user id the database
# itself looked up (user_id_by_email), while the caller is still the PagerDuty machine user.
_ACKNOWLEDGE = """
UPDATE infrastructure_alerts
SET acknowledged_by = COALESCE(%(by)s, auth.uid()), acknowledged_at = now()
WHERE id = %(id)s AND resolved_at IS NULL
RETURNING to_jsonb(infrastructure_alerts)
"""


async def acknowledge_alert(
    conn: psycopg.AsyncConnection[Any], alert_id: UUID, *, by: UUID | None = None
) -> dict[str, Any] | None:
    """Mark an unresolved alert acknowledged by the caller (or `by`); the row after, or None."""
    cur = await conn.execute(_ACKNOWLEDGE, {"id": alert_id, "by": by})
    row = await cur.fetchone()
    return None if row is None else dict(row[0])


# resolved_at is set only when the alert has really ended (a manual incident the caller ends,
# or a rule alert Alertmanager no longer has); otherwise the notes wait for the recorder, whose
# upsert sets resolved_at when the resolution arrives and keeps resolved_by and the notes.
_RESOLVE = """
UPDATE infrastructure_alerts SET
    resolved_by = COALESCE(%(by)s, auth.uid()),
    resolution_notes = COALESCE(%(notes)s, resolution_notes),
    resolved_at = CASE WHEN %(ended)s THEN now() ELSE resolved_at END
WHERE id = %(id)s AND resolved_at IS NULL
RETURNING to_jsonb(infrastructure_alerts)
"""


async def resolve_alert(
    conn: psycopg.AsyncConnection[Any],
    alert_id: UUID,
    notes: str | None,
    *,
    ended: bool,
    by: UUID | None = None,
) -> dict[str, Any] | None:
    """Record the caller's (or `by`'s) resolution (and the time, when `ended`); the row after,
    or None."""
    cur = await conn.execute(_RESOLVE, {"id": alert_id, "notes": notes, "ended": ended, "by": by})
    row = await cur.fetchone()
    return None if row is None else dict(row[0])


# No RETURNING: that would also need the SELECT policy, which admits admins only.
_AUDIT = """
INSERT INTO infrastructure_audit_log (
    actor_user_id, actor_kind, actor_machine, action, target_table, target_id, before, after,
    request_id
) VALUES (
    %(actor_user_id)s, %(actor_kind)s, %(actor_machine)s, %(action)s, %(target_table)s,
    %(target_id)s, %(before)s, %(after)s, %(request_id)s
)
"""


async def append_audit(conn: psycopg.AsyncConnection[Any], entry: AuditEntry) -> None:
    """Append to infrastructure_audit_log inside the caller's transaction (the write it
    describes commits or rolls back with it)."""
    params = asdict(entry)
    params["before"] = None if entry.before is None else Jsonb(entry.before)
    params["after"] = None if entry.after is None else Jsonb(entry.after)
    await conn.execute(_AUDIT, params)


# --- PagerDuty v3 webhooks (api/pagerduty.py), as the PagerDuty machine user (migration 0009) --

# Claimed first in the webhook's transaction: a concurrent redelivery waits on the primary key
# until this transaction ends, then finds the claim (and writes nothing); a rolled-back
# transaction takes its claim with it, so PagerDuty's retry applies the event.
_CLAIM_PAGERDUTY_EVENT = """
INSERT INTO pagerduty_webhook_events (event_id, event_type, incident_id, incident_key, occurred_at)
VALUES (%(event_id)s, %(event_type)s, %(incident_id)s, %(incident_key)s, %(occurred_at)s)
ON CONFLICT (event_id) DO NOTHING
"""


async def claim_pagerduty_event(
    conn: psycopg.AsyncConnection[Any],
    *,
    event_id: str,
    event_type: str,
    incident_id: str | None,
    incident_key: str | None,
    occurred_at: datetime | None,
) -> bool:
    """Record a PagerDuty event id inside the caller's transaction; False when it was processed
    before (nothing was written). No RETURNING: rowcount says whether the row is new."""
    cur = await conn.execute(
        _CLAIM_PAGERDUTY_EVENT,
        {
            "event_id": event_id,
            "event_type": event_type,
            "incident_id": incident_id,
            "incident_key": incident_key,
            "occurred_at": occurred_at,
        },
    )
    return cur.rowcount == 1


async def finish_pagerduty_event(
    conn: psycopg.AsyncConnection[Any], event_id: str, matched: int
) -> None:
    await conn.execute(
        "UPDATE pagerduty_webhook_events SET matched = %s WHERE event_id = %s",
        (matched, event_id),
    )


async def active_alert_groups(
    conn: psycopg.AsyncConnection[Any],
) -> list[tuple[UUID, str, dict[str, Any]]]:
    """(row id, group key, labels) for every unresolved alert and each Alertmanager group that
    notified the recorder of it (wsinfra_active_alert_groups, migration 0009: empty for a caller
    the alerts policy does not admit)."""
    cur = await conn.execute(
        "SELECT alert_row, group_key, labels FROM public.wsinfra_active_alert_groups()"
    )
    return [(r[0], r[1], r[2] if isinstance(r[2], dict) else {}) for r in await cur.fetchall()]


async def user_id_by_email(conn: psycopg.AsyncConnection[Any], email: str) -> UUID | None:
    """The one account with this email (case-insensitive), or None (migration 0009)."""
    cur = await conn.execute("SELECT public.wsinfra_user_id_by_email(%s)", (email,))
    row = await cur.fetchone()
    return None if row is None or row[0] is None else UUID(str(row[0]))


# Machine callers (api machine_tokens) are users like any other for the policies: a row in
# auth.users and a profile with their role. Run with the API's own login role, not as a caller.
_MACHINE_USER = "INSERT INTO auth.users (id) VALUES (%s) ON CONFLICT (id) DO NOTHING"
_MACHINE_PROFILE = """
INSERT INTO user_profiles (user_id, role) VALUES (%s, %s)
ON CONFLICT (user_id) DO UPDATE SET role = EXCLUDED.role
WHERE user_profiles.role IS DISTINCT FROM EXCLUDED.role
"""


async def upsert_machine_users(
    conn: psycopg.AsyncConnection[Any], users: list[tuple[UUID, str]]
) -> None:
    """Make each (user id, role) exist in auth.users and user_profiles, in one transaction."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(_MACHINE_USER, [(uid,) for uid, _ in users])
        await cur.executemany(_MACHINE_PROFILE, users)
