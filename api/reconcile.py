"""Reconciliation with Alertmanager: the open alert rows against the alerts Alertmanager holds
(docs/operator-api.md, "Reconciliation with Alertmanager").

Why: Alertmanager sends no resolved notification for an alert that ends while silenced
(prometheus/alertmanager#226), and an acknowledgement is a silence. So an acknowledged alert
that ends before its silence does would stay open in infrastructure_alerts (and in GET /alerts,
the overview's Active alerts table) forever, and its silence would outlive it. And Alertmanager
keeps alerts in memory: after a restart without its data a manual incident is gone from it
while its row is open (rule alerts come back by themselves: Prometheus sends them again).

A loop in the API process ticks every `reconcile.interval`, as the role `wsinfra_reconciler`
(migration 0012: reads the alerts' identifying columns, sets resolved_at on open rows, appends
its own audit rows, nothing else).
An open row whose exact label set Alertmanager has not held for `reconcile.grace` on
consecutive ticks (long enough for Prometheus to re-send its alerts after an Alertmanager
restart) is:

- a manual incident still within incident_max_duration: posted again (Alertmanager lost it);
- anything else: resolved now, audited as the system, and the acknowledgement silences that
  match exactly its labels are expired ("silenced until the TTL or its resolution, whichever
  comes first").

Several API replicas may tick at once: each row is resolved under `resolved_at IS NULL`, so
once; a manual incident posted twice is one alert in Alertmanager (same labels).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from aiohttp import web
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from api.alertmanager import AlertmanagerError, rfc3339
from api.alerts import alert_labels
from api.escalation import system_audit
from api.reconcile_config import Reconcile
from api.state import SERVICES, Services
from common.web import background_tasks
from schema import writes

log = logging.getLogger(__name__)

ROLE = "wsinfra_reconciler"
RESULTS = ("resolved", "reposted", "failed")


_OPEN = """
SELECT id, alert_type, severity, service_name, alert_rule, triggered_at, acknowledged_at
FROM infrastructure_alerts
WHERE resolved_at IS NULL AND alert_rule ? 'labels'
ORDER BY triggered_at, id
LIMIT %s
"""
_RESOLVE = (
    "UPDATE infrastructure_alerts SET resolved_at = now() WHERE id = %s AND resolved_at IS NULL"
)


@dataclass(frozen=True, slots=True)
class TickResult:
    resolved: tuple[UUID, ...] = ()
    reposted: tuple[UUID, ...] = ()
    failed: bool = False


def _key(labels: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def _is_manual(labels: dict[str, str]) -> bool:
    return labels.get("source") == "manual" and "incident_id" in labels


def exact_silences(silences: list[dict[str, Any]], labels: dict[str, str]) -> list[str]:
    """Ids of the active or pending silences whose matchers are exactly `labels`, each equal
    and none a regex: the acknowledgement silences of that alert (api/alerts.py makes them so),
    never a person's broader silence."""
    wanted = sorted(labels.items())
    out = []
    for s in silences:
        if s.get("status", {}).get("state") not in ("active", "pending"):
            continue
        matchers = s.get("matchers") or []
        got = sorted(
            (m.get("name"), m.get("value"))
            for m in matchers
            if m.get("isEqual", True) and not m.get("isRegex", False)
        )
        if len(got) == len(matchers) and got == wanted and isinstance(s.get("id"), str):
            out.append(s["id"])
    return out


class Reconciler:
    def __init__(self, services: Services, cfg: Reconcile, incident_max_duration: float) -> None:
        self.services = services
        self.cfg = cfg
        self.incident_max_duration = incident_max_duration
        # Row id -> when (monotonic) Alertmanager was first seen without it, this process.
        self.absent_since: dict[UUID, float] = {}

    async def tick(self, now: float | None = None) -> TickResult:
        """One pass. Never raises for a failing dependency (logged, counted, retried)."""
        now = time.monotonic() if now is None else now
        services = self.services
        metrics = services.metrics.reconciled
        try:
            async with services.db.as_system(ROLE) as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(_OPEN, (self.cfg.batch_size,))
                rows = await cur.fetchall()
            held = {_key(labels) for labels in await services.alertmanager.unresolved()}
            due = self._due(rows, held, now)
            if not due:
                return TickResult()
            resolved, reposted = await self._act(due)
        except AlertmanagerError as exc:
            services.metrics.alertmanager_errors.labels(exc.operation).inc()
            log.warning(
                "reconciliation failed: alertmanager",
                extra={"operation": exc.operation, "reason": exc.reason},
            )
        except psycopg.errors.InsufficientPrivilege as exc:
            log.error(
                f"reconciliation failed: the API's login role may not act as {ROLE} "
                f"(GRANT {ROLE} TO <login role>; migration 0012 creates it)",
                extra={"error": exc.diag.message_primary},
            )
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("reconciliation failed: database", extra={"error": type(exc).__name__})
        else:
            metrics.labels("resolved").inc(len(resolved))
            metrics.labels("reposted").inc(len(reposted))
            return TickResult(resolved, reposted)
        metrics.labels("failed").inc()
        return TickResult(failed=True)

    def _due(
        self, rows: list[dict[str, Any]], held: set[frozenset[tuple[str, str]]], now: float
    ) -> list[dict[str, Any]]:
        """The rows Alertmanager has been without for `grace`; tracks the others."""
        seen_open = set()
        due = []
        for row in rows:
            seen_open.add(row["id"])
            labels = alert_labels(row)
            if not labels or _key(labels) in held:
                self.absent_since.pop(row["id"], None)
                continue
            since = self.absent_since.setdefault(row["id"], now)
            if now - since >= self.cfg.grace:
                due.append(row)
        # Rows resolved elsewhere since: forget them.
        for gone in set(self.absent_since) - seen_open:
            del self.absent_since[gone]
        return due

    async def _act(self, due: list[dict[str, Any]]) -> tuple[tuple[UUID, ...], tuple[UUID, ...]]:
        services = self.services
        wall = datetime.now(UTC)
        repost: list[dict[str, Any]] = []
        resolve: list[dict[str, Any]] = []
        for row in due:
            labels = alert_labels(row)
            ends = row["triggered_at"] + timedelta(seconds=self.incident_max_duration)
            (repost if _is_manual(labels) and ends > wall else resolve).append(row)
        if repost:
            await services.alertmanager.post_alerts([self._again(r) for r in repost])
        resolved: list[UUID] = []
        async with services.db.as_system(ROLE) as conn:
            for row in resolve:
                cur = await conn.execute(_RESOLVE, (row["id"],))
                if cur.rowcount:
                    resolved.append(row["id"])
                    await writes.append_audit(
                        conn,
                        system_audit(
                            "alert.reconcile_resolve",
                            row["id"],
                            {"resolved_at": None},
                            {
                                "resolved_at": rfc3339(wall),
                                "because": "Alertmanager no longer holds the alert "
                                f"(absent for at least {self.cfg.grace:g} s)",
                            },
                        ),
                    )
            for row in repost:
                await writes.append_audit(
                    conn,
                    system_audit(
                        "alert.reconcile_repost",
                        row["id"],
                        None,
                        {
                            "because": "Alertmanager no longer held the open manual incident",
                        },
                    ),
                )
        # Committed. The acknowledgement silences of what ended go too (best effort: a silence
        # left behind mutes nothing that fires, and expires at its TTL anyway).
        if resolved:
            silences = await services.alertmanager.silences()
            for row in resolve:
                if row["id"] in resolved and row.get("acknowledged_at") is not None:
                    for sid in exact_silences(silences, alert_labels(row)):
                        await services.alertmanager.expire_silence(sid)
        for row in due:
            self.absent_since.pop(row["id"], None)
        for row_id in resolved:
            log.info("alert resolved by reconciliation", extra={"alert_row": str(row_id)})
        return tuple(resolved), tuple(r["id"] for r in repost)

    def _again(self, row: dict[str, Any]) -> dict[str, Any]:
        rule = row.get("alert_rule") or {}
        annotations = rule.get("annotations") if isinstance(rule, dict) else None
        ends = row["triggered_at"] + timedelta(seconds=self.incident_max_duration)
        return {
            "labels": alert_labels(row),
            "annotations": {
                str(k): v for k, v in (annotations or {}).items() if isinstance(v, str)
            },
            "startsAt": rfc3339(row["triggered_at"]),
            "endsAt": rfc3339(ends),
        }

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.interval)
            try:
                await self.tick()
            except Exception:
                log.exception("reconciliation tick failed")
                self.services.metrics.reconciled.labels("failed").inc()


RECONCILER = web.AppKey("reconciler", Reconciler)


def make_reconciler(app: web.Application, cfg: Reconcile, incident_max_duration: float) -> None:
    """Set app[RECONCILER] and run its loop with the app (when enabled)."""
    reconciler = Reconciler(app[SERVICES], cfg, incident_max_duration)
    app[RECONCILER] = reconciler
    if cfg.enabled:
        app.cleanup_ctx.append(background_tasks(reconciler.run))
