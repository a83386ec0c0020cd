"""Escalation: a critical alert nobody acknowledged within `escalation.after` (default 15 min)
is escalated once, to the second level, and the escalation ends when the alert is acknowledged
or resolved (docs/operator-api.md, "Escalation"; runbooks/Escalation.md).

A loop in the API process ticks every `check_interval`. A tick has two steps, each one database
transaction run as the role `wsinfra_escalation` (migration 0010: the system acting, not a
caller; it reads critical alerts, sets escalated_at / escalation_ended_at, appends its own audit
rows, nothing else):

1. escalate: lock the due rows (critical, unresolved, unacknowledged, fired more than `after`
   ago, not yet escalated) with FOR UPDATE SKIP LOCKED, set escalated_at, post one `Escalation`
   alert per row to Alertmanager, append the audit rows, commit. Alertmanager routes it to the
   `escalation` receiver (alertmanager/alertmanager.yml: the escalation service's PagerDuty key
   and #ops-alerts with a mention).
2. end: lock the escalated rows since acknowledged or resolved (through the API, PagerDuty's
   webhook or the recorder: all alike here), post their escalation alert again with
   endsAt = now, set escalation_ended_at, audit, commit.

Exactly once, with any number of API replicas: a row is claimed under its row lock and marked in
the same transaction; another replica's tick skips the locked row, and once the mark commits
the row no longer qualifies. The mark commits only after Alertmanager accepted the post, so a
failed post (Alertmanager down) leaves the row unmarked and the next tick tries again
(api_escalations_total{result="failed"} counts it). If the audit row or the commit fails after
the post, the post is taken back (the escalation ended again) as api/alerts.py takes back its
actions, and the next tick escalates afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from aiohttp import web
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from api.alertmanager import AlertmanagerError, rfc3339
from api.alerts import TABLE, alert_labels, take_back
from api.escalation_config import Escalation
from api.state import SERVICES, Services
from common.web import background_tasks
from schema import writes
from schema.rows import AuditEntry

log = logging.getLogger(__name__)

# The database role the loop acts as (migration 0010); the API's login role must be a member.
ROLE = "wsinfra_escalation"
# The audit log's actor for what the system does (migration 0010): no person, no machine token.
SYSTEM_ACTOR = UUID(int=0)
ALERTNAME = "Escalation"
LEVEL = "1"
# Labels of the escalated alert copied onto its escalation, when it has them: they say which
# target, project or region it is about, and the message templates show them.
_COPIED_LABELS = ("target", "project", "region", "instance")

# Due for escalation. The alert_type test keeps the escalation alerts themselves (which the
# recorder writes as critical rows like any other) from ever being escalated in turn.
_DUE = """
SELECT id, alert_type, service_name, alert_title, alert_rule, triggered_at
FROM infrastructure_alerts
WHERE severity = 'critical'
  AND resolved_at IS NULL
  AND acknowledged_at IS NULL
  AND escalated_at IS NULL
  AND alert_type <> %(alertname)s
  AND triggered_at <= now() - make_interval(secs => %(after)s)
ORDER BY triggered_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
_MARK_ESCALATED = """
UPDATE infrastructure_alerts SET escalated_at = now()
WHERE id = ANY(%s) AND escalated_at IS NULL
RETURNING id, escalated_at
"""
# Escalated, since acknowledged or resolved, and not yet ended.
_TO_END = """
SELECT id, alert_type, service_name, alert_title, alert_rule, triggered_at, escalated_at,
       acknowledged_at, resolved_at
FROM infrastructure_alerts
WHERE escalated_at IS NOT NULL
  AND escalation_ended_at IS NULL
  AND (acknowledged_at IS NOT NULL OR resolved_at IS NOT NULL)
ORDER BY escalated_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
_MARK_ENDED = """
UPDATE infrastructure_alerts SET escalation_ended_at = now()
WHERE id = ANY(%s) AND escalation_ended_at IS NULL
RETURNING id, escalation_ended_at
"""


def _duration_text(seconds: float) -> str:
    """15 min, 1 h 30 min, 45 s: for people reading the message."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    parts.append(f"{secs} s" if secs or not whole else "")
    return " ".join(p for p in parts if p)


def escalation_labels(row: dict[str, Any]) -> dict[str, str]:
    """The escalation alert's labels: derived from the row's columns only, so the end step
    rebuilds exactly the labels the escalate step posted. `escalated_alert_id` keeps two
    escalated alerts of one alert name and service apart (Alertmanager's identity is the label
    set); it is a label of an Alertmanager alert, never of a Prometheus series."""
    labels = {
        "alertname": ALERTNAME,
        "severity": "critical",
        "escalation": LEVEL,
        "escalated_alertname": str(row["alert_type"]),
        "service": str(row["service_name"]),
        "escalated_alert_id": str(row["id"]),
    }
    original = alert_labels(row)
    for name in _COPIED_LABELS:
        if original.get(name):
            labels[name] = original[name]
    return labels


def escalation_alert(
    row: dict[str, Any],
    escalated_at: datetime,
    cfg: Escalation,
    runbook_url: str,
) -> dict[str, Any]:
    """The Alertmanager alert that escalates `row` (firing from escalated_at to at most
    escalated_at + max_duration)."""
    triggered: datetime = row["triggered_at"]
    waited = _duration_text(max(0.0, (escalated_at - triggered).total_seconds()))
    rule = row.get("alert_rule")
    original = rule.get("annotations") if isinstance(rule, dict) else None
    original_runbook = original.get("runbook_url") if isinstance(original, dict) else None
    name, service, title = row["alert_type"], row["service_name"], row["alert_title"]
    annotations = {
        "summary": f"Escalated: {title} ({name} on {service}) unacknowledged for {waited}",
        "description": (
            f"The critical alert {name} on {service} has fired since "
            f"{triggered.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC and nobody acknowledged it "
            f"within {_duration_text(cfg.after)}: the first level was paged and did not answer. "
            f"Alert row {row['id']}."
        ),
        "remediation": (
            "Find who owns it, then acknowledge the ALERT itself (operator API PUT "
            f'/api/infrastructure/alerts {{"id": "{row["id"]}", "action": "acknowledge"}}, or its '
            "first-level PagerDuty incident): that ends this escalation. Then follow the alert's "
            "own runbook."
        ),
        "runbook_url": runbook_url,
    }
    if isinstance(original_runbook, str) and original_runbook:
        annotations["escalated_runbook_url"] = original_runbook
    return {
        "labels": escalation_labels(row),
        "annotations": annotations,
        "startsAt": rfc3339(escalated_at),
        # Bounded: an escalation nobody ends (the API gone for good) stops by itself.
        "endsAt": rfc3339(escalated_at + timedelta(seconds=cfg.max_duration)),
    }


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick did: the alert rows escalated and ended, and the steps that failed."""

    escalated: tuple[UUID, ...] = ()
    ended: tuple[UUID, ...] = ()
    failed: tuple[str, ...] = ()


class _StepFailed(Exception):
    """A step could not finish; it was logged and counted, and nothing of it was committed."""


class Escalator:
    def __init__(self, services: Services, cfg: Escalation, runbook_base_url: str) -> None:
        self.services = services
        self.cfg = cfg
        self.runbook_url = self.runbook_for(runbook_base_url)

    @staticmethod
    def runbook_for(runbook_base_url: str) -> str:
        return f"{runbook_base_url.rstrip('/')}/Escalation.md#escalation"

    def _as_system(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """A transaction as ROLE. It commits when the block ends, rolls back if it raises."""
        return self.services.db.as_system(ROLE)

    async def tick(self) -> TickResult:
        """One pass: escalate what is due, end what was acknowledged or resolved. Never raises
        for a failing dependency (it is logged and counted; the next tick retries)."""
        failed: list[str] = []
        escalated: tuple[UUID, ...] = ()
        ended: tuple[UUID, ...] = ()
        try:
            escalated = await self._step("escalate", self._escalate)
        except _StepFailed:
            failed.append("escalate")
        try:
            ended = await self._step("end", self._end)
        except _StepFailed:
            failed.append("end")
        return TickResult(escalated, ended, tuple(failed))

    async def _step(
        self, step: str, run: Callable[[], Awaitable[tuple[UUID, ...]]]
    ) -> tuple[UUID, ...]:
        metrics = self.services.metrics
        try:
            return await run()
        except AlertmanagerError as exc:
            metrics.alertmanager_errors.labels(exc.operation).inc()
            log.warning(
                "escalation step failed: alertmanager",
                extra={"step": step, "operation": exc.operation, "reason": exc.reason},
            )
        except psycopg.errors.InsufficientPrivilege as exc:
            # Our setup, not a passing outage: say exactly what is missing.
            log.error(
                "escalation step failed: the API's login role may not act as "
                f"{ROLE} (GRANT {ROLE} TO <login role>; migration 0010 creates it)",
                extra={"step": step, "error": exc.diag.message_primary},
            )
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning(
                "escalation step failed: database",
                extra={"step": step, "error": type(exc).__name__},
            )
        metrics.escalations.labels("failed").inc()
        raise _StepFailed(step)

    async def _escalate(self) -> tuple[UUID, ...]:
        services = self.services
        undo: Callable[[], Awaitable[object]] | None = None
        try:
            async with self._as_system() as conn:
                # Dict rows on this cursor only: the pooled connection keeps its own factory.
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    _DUE,
                    {"alertname": ALERTNAME, "after": self.cfg.after, "limit": self.cfg.batch_size},
                )
                due = await cur.fetchall()
                if not due:
                    return ()
                await cur.execute(_MARK_ESCALATED, ([r["id"] for r in due],))
                marked = {r["id"]: r["escalated_at"] for r in await cur.fetchall()}
                rows = [r for r in due if r["id"] in marked]
                alerts = [
                    escalation_alert(r, marked[r["id"]], self.cfg, self.runbook_url) for r in rows
                ]
                await services.alertmanager.post_alerts(alerts)
                now = rfc3339(datetime.now(UTC))
                ended = [{**a, "endsAt": now} for a in alerts]
                undo = lambda: services.alertmanager.post_alerts(ended)  # noqa: E731
                for row, alert in zip(rows, alerts, strict=True):
                    await writes.append_audit(
                        conn,
                        system_audit(
                            "alert.escalate",
                            row["id"],
                            {"escalated_at": None},
                            {
                                "escalated_at": rfc3339(marked[row["id"]]),
                                "alertmanager": {"alert": alert},
                            },
                        ),
                    )
        except BaseException:
            if undo is not None:
                await take_back(services, "post escalation", undo)
            raise
        ids = tuple(r["id"] for r in rows)
        services.metrics.escalations.labels("escalated").inc(len(ids))
        for row in rows:
            log.info(
                "alert escalated",
                extra={"alert_row": str(row["id"]), "alertname": row["alert_type"]},
            )
        return ids

    async def _end(self) -> tuple[UUID, ...]:
        services = self.services
        async with self._as_system() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_TO_END, {"limit": self.cfg.batch_size})
            rows = await cur.fetchall()
            if not rows:
                return ()
            await cur.execute(_MARK_ENDED, ([r["id"] for r in rows],))
            marked = {r["id"]: r["escalation_ended_at"] for r in await cur.fetchall()}
            rows = [r for r in rows if r["id"] in marked]
            now = datetime.now(UTC)
            alerts = [
                {
                    **escalation_alert(r, r["escalated_at"], self.cfg, self.runbook_url),
                    "endsAt": rfc3339(now),
                }
                for r in rows
            ]
            # Nothing to take back after this: ending an escalation twice (a failed commit, the
            # next tick ends it again) changes nothing in Alertmanager.
            await services.alertmanager.post_alerts(alerts)
            for row in rows:
                why = "acknowledged" if row["acknowledged_at"] is not None else "resolved"
                await writes.append_audit(
                    conn,
                    system_audit(
                        "alert.escalation_end",
                        row["id"],
                        {"escalation_ended_at": None},
                        {"escalation_ended_at": rfc3339(marked[row["id"]]), "because": why},
                    ),
                )
        ids = tuple(r["id"] for r in rows)
        services.metrics.escalations.labels("ended").inc(len(ids))
        return ids

    async def run(self) -> None:
        """Tick every check_interval until cancelled; the first tick one interval after start
        (the pool is still connecting at start, and a restart loop must not post in a burst)."""
        while True:
            await asyncio.sleep(self.cfg.check_interval)
            try:
                await self.tick()
            except Exception:
                # A bug, not a dependency: logged with its traceback, and the loop lives on.
                log.exception("escalation tick failed")
                self.services.metrics.escalations.labels("failed").inc()


def system_audit(
    action: str, row_id: UUID, before: dict[str, Any] | None, after: dict[str, Any]
) -> AuditEntry:
    """An audit row of what the system did (no caller): the background loops'."""
    return AuditEntry(
        actor_user_id=SYSTEM_ACTOR,
        actor_kind="system",
        actor_machine=None,
        action=action,
        target_table=TABLE,
        target_id=str(row_id),
        before=before,
        after=after,
        request_id=None,
    )


ESCALATOR = web.AppKey("escalator", Escalator)


def make_escalator(app: web.Application, cfg: Escalation, runbook_base_url: str) -> None:
    """Set the app's escalator (app[ESCALATOR]) and run its loop with the app."""
    escalator = Escalator(app[SERVICES], cfg, runbook_base_url)
    app[ESCALATOR] = escalator
    if cfg.enabled:
        app.cleanup_ctx.append(background_tasks(escalator.run))
