"""/api/infrastructure/alerts: the spec's AlertsResponse (GET), a manual incident posted to
Alertmanager (POST), and acknowledge/resolve of one alert (PUT).

Ordering of database writes and Alertmanager calls (two systems, no shared transaction):

1. Everything the database can refuse happens first, inside the caller's transaction: the
   row-level security checks, the UPDATE of the alert row.
2. Then the one Alertmanager call (post the incident, create the silence, end the incident).
   If it fails, the transaction rolls back: nothing is written, the answer is 503 (or 502 when
   Alertmanager refused what we sent).
3. Then the audit row, and the commit. If either fails after Alertmanager acted, the action is
   undone in Alertmanager (the incident ended, the silence expired, the ended incident fired
   again) and the answer is 503; api_alertmanager_compensations counts it, and if the undo
   fails too the log says exactly what Alertmanager holds that the database does not.

So a refused or failed request never leaves a half-write in the database, and leaves
Alertmanager changed only in the narrow window of a commit failing and its undo failing too.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID, uuid4

import psycopg
from aiohttp import web

from api.alertmanager import AlertmanagerError, AlertmanagerUnavailable, rfc3339
from api.auth import Identity
from api.bodies import AlertActionRequest, CreateAlertRequest, no_query, read_body
from api.db import may_write_alerts
from api.errors import ApiError
from api.notices import acknowledgement_notice, tell_ops
from api.state import REQUEST_ID, SERVICES, Services, caller
from schema import writes
from schema.rows import AuditEntry

log = logging.getLogger(__name__)
T = TypeVar("T")
TABLE = "infrastructure_alerts"
# recent_resolutions lists the last 24 hours' resolutions, newest first, at most this many: a
# flapping alert can resolve thousands of times a day, and a dashboard needs the recent ones.
MAX_RESOLUTIONS = 500

_ACTIVE = """
SELECT id, alert_type, severity, service_name, alert_title, current_metric_value, triggered_at,
       GREATEST(0, floor(EXTRACT(EPOCH FROM now() - triggered_at) / 60))::bigint, escalated_at
FROM infrastructure_alerts
WHERE resolved_at IS NULL
ORDER BY triggered_at DESC, id
"""

_RESOLVED = """
SELECT alert_type, GREATEST(0, floor(EXTRACT(EPOCH FROM resolved_at - triggered_at) / 60))::bigint,
       resolved_at
FROM infrastructure_alerts
WHERE resolved_at >= now() - INTERVAL '24 hours'
ORDER BY resolved_at DESC, id
LIMIT %s
"""


def _time(value: datetime) -> str:
    return rfc3339(value)


def _number(value: Decimal | float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


async def list_alerts(request: web.Request) -> web.Response:
    """AlertsResponse, over the rows the caller's policies show: a caller the alerts policy
    does not admit gets empty lists and zero counts, exactly as Supabase's API would answer."""
    services = request.app[SERVICES]
    who = await caller(request)
    no_query(request)
    async with services.db.as_caller(who) as conn:
        active = await (await conn.execute(_ACTIVE)).fetchall()
        resolved = await (await conn.execute(_RESOLVED, (MAX_RESOLUTIONS,))).fetchall()
    # The spec's alert_summary keys: every severity the column's CHECK allows.
    summary = dict.fromkeys(("critical", "error", "warning", "info"), 0)
    active_alerts = []
    for rid, alert_type, severity, service, title, value, triggered, minutes, escalated in active:
        if severity in summary:
            summary[severity] += 1
        item: dict[str, Any] = {
            "id": str(rid),
            "alert_type": alert_type,
            "severity": severity,
            "service_name": service,
            "alert_title": title,
            "triggered_at": _time(triggered),
            "duration_minutes": int(minutes),
        }
        # Optional in the spec (current_metric_value?: number): absent, never null.
        number = _number(value)
        if number is not None:
            item["current_metric_value"] = number
        # Not in the spec's AlertsResponse: an extra, optional field (api/escalation.py).
        if escalated is not None:
            item["escalated_at"] = _time(escalated)
        active_alerts.append(item)
    return web.json_response(
        {
            "active_alerts": active_alerts,
            "alert_summary": summary,
            "recent_resolutions": [
                {
                    "alert_type": alert_type,
                    "resolution_time_minutes": int(minutes),
                    "resolved_at": _time(at),
                }
                for alert_type, minutes, at in resolved
            ],
        }
    )


async def alertmanager_call(services: Services, call: Awaitable[T]) -> T:
    """An Alertmanager call whose failure is a 503 (or 502 when it refused us), counted."""
    try:
        return await call
    except AlertmanagerError as exc:
        services.metrics.alertmanager_errors.labels(exc.operation).inc()
        log.warning(
            "alertmanager call failed", extra={"operation": exc.operation, "reason": exc.reason}
        )
        code = (
            "alertmanager_unavailable"
            if isinstance(exc, AlertmanagerUnavailable)
            else "alertmanager_refused"
        )
        raise ApiError(code, f"Alertmanager: {exc.reason}; nothing was changed") from None


async def take_back(services: Services, what: str, undo: Callable[[], Awaitable[object]]) -> None:
    """Take back an Alertmanager action whose database commit failed (see the module doc)."""
    try:
        await undo()
    except AlertmanagerError as exc:
        services.metrics.compensations.labels("failed").inc()
        log.error(
            "alertmanager action kept without its database write",
            extra={"action": what, "reason": exc.reason},
        )
        return
    services.metrics.compensations.labels("undone").inc()
    log.warning("alertmanager action undone after a failed commit", extra={"action": what})


def _audit(
    request: web.Request,
    who: Identity,
    action: str,
    target_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEntry:
    return who.audit(action, TABLE, target_id, before, after, request[REQUEST_ID])


def manual_alert(
    req: CreateAlertRequest,
    incident_id: UUID,
    who: Identity,
    now: datetime,
    ends: datetime,
    runbook_url: str,
) -> dict[str, Any]:
    """The Alertmanager alert of a manual incident: routed, paged and recorded like a rule's."""
    annotations = {
        "summary": req.alert_title,
        "description": req.alert_description,
        "runbook_url": runbook_url,
        "created_by": who.display,
    }
    if req.metric_threshold is not None:
        # The recorder reads `threshold` into infrastructure_alerts.metric_threshold.
        annotations["threshold"] = repr(req.metric_threshold)
    if req.alert_rule is not None:
        # Labels and annotations are strings; the rule travels as JSON and lands in the row's
        # alert_rule.annotations.
        annotations["alert_rule"] = json.dumps(req.alert_rule, sort_keys=True)
    return {
        "labels": {
            "alertname": req.alert_type,
            "severity": req.severity,
            "service": req.service_name,
            "source": "manual",
            "incident_id": str(incident_id),
        },
        "annotations": annotations,
        "startsAt": rfc3339(now),
        # Without an end Alertmanager resolves an alert nobody re-sends after resolve_timeout;
        # a manual incident fires until it is resolved (or incident_max_duration passes).
        "endsAt": rfc3339(ends),
    }


async def create_alert(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = services.settings
    who = await caller(request)
    no_query(request)
    req = await read_body(request, CreateAlertRequest, settings.max_body_bytes)
    incident_id = uuid4()
    now = datetime.now(UTC)
    alert = manual_alert(
        req,
        incident_id,
        who,
        now,
        now + timedelta(seconds=settings.incident_max_duration),
        settings.runbook_url,
    )
    undo: Callable[[], Awaitable[object]] | None = None
    try:
        async with services.db.as_caller(who) as conn:
            # The row itself is written by the recorder when Alertmanager notifies it; whether
            # this caller may create alerts is the alerts policy's answer, asked directly.
            if not await may_write_alerts(conn):
                raise ApiError("forbidden", "row-level security does not let you create alerts")
            await alertmanager_call(services, services.alertmanager.post_alerts([alert]))
            ended = {**alert, "endsAt": rfc3339(datetime.now(UTC))}
            undo = lambda: services.alertmanager.post_alerts([ended])  # noqa: E731
            await writes.append_audit(
                conn,
                _audit(request, who, "alert.create", str(incident_id), None, {"alert": alert}),
            )
    except BaseException:
        if undo is not None:
            await take_back(services, "post manual incident", undo)
        raise
    return web.json_response(
        {"incident_id": str(incident_id), "status": "posted", "labels": alert["labels"]},
        status=202,
    )


async def _refusal(conn: psycopg.AsyncConnection[Any]) -> ApiError:
    """Why a row the caller named is not there for them. Row-level security hides rows without
    saying why, so this cannot tell a missing row from a forbidden one for a caller the alerts
    policy does not admit: such a caller always gets 403 (whether the id exists or not, which
    leaks nothing); an admitted caller who sees no row gets 404."""
    if await may_write_alerts(conn):
        return ApiError("not_found", "no alert with this id")
    return ApiError("forbidden", "row-level security does not let you change alerts")


def alert_labels(row: dict[str, Any]) -> dict[str, str]:
    """The Alertmanager labels the recorder kept in alert_rule (empty for a row from elsewhere)."""
    rule = row.get("alert_rule")
    labels = rule.get("labels") if isinstance(rule, dict) else None
    if not isinstance(labels, dict):
        return {}
    return {str(k): v for k, v in labels.items() if isinstance(v, str)}


def _is_manual(labels: dict[str, str]) -> bool:
    return labels.get("source") == "manual" and "incident_id" in labels


def _row_time(value: Any) -> str | None:
    """A timestamp of a row read as JSON (PostgreSQL's ISO form) in the API's RFC 3339 form."""
    if not isinstance(value, str):
        return None
    return rfc3339(datetime.fromisoformat(value))


def _action_response(
    action: str,
    state: str,
    row: dict[str, Any],
    silence_id: str | None = None,
    silence_ends: datetime | None = None,
    ops_notified: bool | None = None,
) -> web.Response:
    extra = {} if ops_notified is None else {"ops_notified": ops_notified}
    return web.json_response(
        {
            **extra,
            "id": str(row["id"]),
            "action": action,
            "state": state,
            "acknowledged_by": row.get("acknowledged_by"),
            "acknowledged_at": _row_time(row.get("acknowledged_at")),
            "resolved_by": row.get("resolved_by"),
            "resolved_at": _row_time(row.get("resolved_at")),
            "resolution_notes": row.get("resolution_notes"),
            "silence_id": silence_id,
            "silence_ends_at": None if silence_ends is None else rfc3339(silence_ends),
        }
    )


async def update_alert(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await caller(request)
    no_query(request)
    req = await read_body(request, AlertActionRequest, services.settings.max_body_bytes)
    if req.action == "acknowledge":
        return await _acknowledge(request, services, who, req)
    return await _resolve(request, services, who, req)


async def _acknowledge(
    request: web.Request, services: Services, who: Identity, req: AlertActionRequest
) -> web.Response:
    """Record who acknowledged, and silence exactly this alert (its labels, all of them) for
    ack_ttl. Acknowledging again records the new time and makes a new silence (to extend)."""
    undo: Callable[[], Awaitable[object]] | None = None
    silence_id = None
    ends = None
    try:
        async with services.db.as_caller(who) as conn:
            before = await _lock_open(
                conn, req.alert_id, "the alert is resolved; nothing to acknowledge"
            )
            after = await writes.acknowledge_alert(conn, req.alert_id)
            if after is None:
                raise await _refusal(conn)
            labels = alert_labels(before)
            extra: dict[str, Any] = {}
            if labels:
                now = datetime.now(UTC)
                # Whole milliseconds, as Alertmanager keeps it: the answer then names its end.
                ends = now + timedelta(seconds=services.settings.ack_ttl)
                ends = ends.replace(microsecond=ends.microsecond // 1000 * 1000)
                silence = _silence(labels, now, ends, who, req)
                silence_id = await alertmanager_call(
                    services, services.alertmanager.create_silence(silence)
                )
                sid = silence_id
                undo = lambda: services.alertmanager.expire_silence(sid)  # noqa: E731
                extra = {"alertmanager": {"silence_id": silence_id, "silence": silence}}
            await writes.append_audit(
                conn,
                _audit(request, who, "alert.acknowledge", str(req.id), before, {**after, **extra}),
            )
    except BaseException:
        if undo is not None:
            await take_back(services, "create acknowledgement silence", undo)
        raise
    # Committed: now the ops channel is told who took it (best effort: notices.py).
    told = await tell_ops(
        services, acknowledgement_notice(before, who.display, req.notes, "the operator API")
    )
    return _action_response("acknowledge", "acknowledged", after, silence_id, ends, told)


async def _lock_open(
    conn: psycopg.AsyncConnection[Any], alert_id: UUID, resolved_reason: str
) -> dict[str, Any]:
    """The alert's row, locked for this transaction: refused (403/404, as RLS answers) when the
    caller cannot see it, 409 when it is already resolved."""
    before = await writes.lock_alert(conn, alert_id)
    if before is None:
        raise await _refusal(conn)
    if before.get("resolved_at") is not None:
        raise ApiError("already_resolved", resolved_reason)
    return before


def _silence(
    labels: dict[str, str], now: datetime, ends: datetime, who: Identity, req: AlertActionRequest
) -> dict[str, Any]:
    comment = f"Acknowledged by {who.display} through the operator API (alert {req.id})"
    if req.notes:
        comment += f": {req.notes}"
    return {
        # Every label, matched exactly: this alert instance and nothing else.
        "matchers": [
            {"name": name, "value": value, "isRegex": False, "isEqual": True}
            for name, value in sorted(labels.items())
        ],
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(ends),
        "createdBy": who.display,
        "comment": comment,
    }


async def _resolve(
    request: web.Request, services: Services, who: Identity, req: AlertActionRequest
) -> web.Response:
    """Record who resolved it and their notes; whether it has ended is resolve_locked's call."""
    undo: Callable[[], Awaitable[object]] | None = None
    try:
        async with services.db.as_caller(who) as conn:
            before = await _lock_open(conn, req.alert_id, "the alert is already resolved")
            resolution = await resolve_locked(services, conn, req.alert_id, before, req.notes)
            if resolution is None:
                raise await _refusal(conn)
            after, ended, undo = resolution
            await writes.append_audit(
                conn, _audit(request, who, "alert.resolve", str(req.id), before, after)
            )
    except BaseException:
        if undo is not None:
            await take_back(services, "end manual incident", undo)
        raise
    return _action_response("resolve", "resolved" if ended else "still_firing", after)


Undo = Callable[[], Awaitable[object]]


async def resolve_locked(
    services: Services,
    conn: psycopg.AsyncConnection[Any],
    alert_id: UUID,
    before: dict[str, Any],
    notes: str | None,
    *,
    by: UUID | None = None,
) -> tuple[dict[str, Any], bool, Undo | None] | None:
    """Resolve an unresolved alert the caller has locked (`before`): resolved_by (the caller, or
    `by`) and the notes always; resolved_at only if the alert has ended. Whether it has is not
    the resolver's word: a manual incident ends now (and in Alertmanager); a rule alert that
    Alertmanager still has firing keeps resolved_at empty (the recorder sets it when the rule
    stops firing); a rule alert Alertmanager no longer has, or a row that never came from
    Alertmanager, ends now. Returns (the row after, ended, how to take back what Alertmanager
    was told), or None when the row is not there for the caller. An Alertmanager failure is an
    ApiError (502/503), with nothing done in Alertmanager."""
    am = services.alertmanager
    labels = alert_labels(before)
    manual = _is_manual(labels)
    ended = manual or not labels or not await alertmanager_call(services, am.firing(labels))
    after = await writes.resolve_alert(conn, alert_id, notes, ended=ended, by=by)
    if after is None:
        return None
    undo: Undo | None = None
    if manual:
        now = datetime.now(UTC)
        rule = before.get("alert_rule")
        annotations = rule.get("annotations") if isinstance(rule, dict) else None
        alert = {
            "labels": labels,
            "annotations": annotations if isinstance(annotations, dict) else {},
            "startsAt": _row_time(before.get("triggered_at")) or rfc3339(now),
        }
        await alertmanager_call(services, am.post_alerts([{**alert, "endsAt": rfc3339(now)}]))
        refire = {
            **alert,
            "endsAt": rfc3339(now + timedelta(seconds=services.settings.incident_max_duration)),
        }
        undo = lambda: am.post_alerts([refire])  # noqa: E731
    return after, ended, undo
