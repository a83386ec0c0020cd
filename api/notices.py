"""Notices for people: "<who> acknowledged <alert>" told in the ops channel. Posted to
Alertmanager as a short-lived alert with kind="notice", which its routing sends to the
ops-notices receiver only (Slack #ops-alerts, no resolved message, not recorded as an alert
row: alertmanager/alertmanager.yml), so Slack's webhook stays Alertmanager's secret alone.

Best effort, after the acknowledgement is committed: the acknowledgement stands whether or not
the notice is posted; a failure is logged and counted (api_alertmanager_errors_total
{operation="post_alerts"}) and the caller's answer says `ops_notified: false`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from api.alertmanager import AlertmanagerError, rfc3339
from api.state import Services

log = logging.getLogger(__name__)

# Long enough for Alertmanager's group_wait and a retry, short enough that a notice never
# lingers in its alert list.
NOTICE_TTL = timedelta(minutes=5)
# Annotation texts are Slack message text: bounded.
MAX_NOTES_CHARS = 500


def acknowledgement_notice(
    row: dict[str, Any], who: str, notes: str | None, via: str, now: datetime | None = None
) -> dict[str, Any]:
    """The notice of one acknowledgement: `row` is the alert's row (infrastructure_alerts),
    `who` the acknowledger's display name, `via` where it was acknowledged."""
    now = now or datetime.now(UTC)
    title = str(row.get("alert_title") or row.get("alert_type") or "an alert")
    severity = str(row.get("severity") or "")
    service = str(row.get("service_name") or "")
    text = f"{severity} · {service} · {row.get('alert_type', '')} · acknowledged via {via}"
    if notes:
        note = notes if len(notes) <= MAX_NOTES_CHARS else notes[: MAX_NOTES_CHARS - 1] + "…"
        text += f"\nNotes: {note}"
    return {
        "labels": {
            "alertname": "AlertAcknowledged",
            "kind": "notice",
            "severity": "info",
            "service": service or "unknown",
            # Each notice its own message (the route groups by every label).
            "notice_id": uuid.uuid4().hex,
        },
        "annotations": {
            "summary": f"{who} acknowledged: {title}",
            "description": text,
            "alert_id": str(row.get("id", "")),
        },
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + NOTICE_TTL),
    }


async def tell_ops(services: Services, notice: dict[str, Any]) -> bool:
    """Post the notice; whether Alertmanager took it."""
    try:
        await services.alertmanager.post_alerts([notice])
    except AlertmanagerError as exc:
        services.metrics.alertmanager_errors.labels(exc.operation).inc()
        log.warning(
            "acknowledgement notice not posted; the acknowledgement stands",
            extra={"operation": exc.operation, "reason": exc.reason},
        )
        return False
    return True
