"""PagerDuty Events API v2: POST /v2/enqueue, as documented (202 on success, 400 with errors),
and the incidents the events open, so that a person can act on one (fakes/pagerduty_webhooks.py
sends what PagerDuty's v3 webhooks would say about it).

Incidents follow the Events API's deduplication: a trigger whose dedup_key names an open
(unresolved) incident joins it; any other trigger opens a new incident; acknowledge and resolve
change the open incident with that key, and are accepted (202) when there is none. A trigger
without a dedup_key gets one made up, returned in the answer and recorded, as PagerDuty does.
"""

from __future__ import annotations

import json
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

_ACTIONS = ("trigger", "acknowledge", "resolve")
_SEVERITIES = ("critical", "error", "warning", "info")
# PagerDuty's object ids are upper-case letters and digits (PGR0VU2, PLH1HKV in its docs).
_ID_ALPHABET = string.ascii_uppercase + string.digits


def pagerduty_id() -> str:
    return "P" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))


@dataclass(slots=True)
class PagerEvent:
    received_at: float
    event: dict[str, Any]
    # The key the event was filed under: the dedup_key it carried, or the one made up for a
    # trigger without one (the answer's dedup_key).
    dedup_key: str = ""
    # The incident it opened, joined or changed; None when it named no open incident.
    incident_id: str | None = None


@dataclass(slots=True)
class Incident:
    """An incident as the v3 webhook's `incident` data describes it (the fields we model).
    `incident_key` is the dedup_key of the event that opened it: the v3 docs show the field
    but do not say so in words (docs/operator-api.md lists this as unconfirmed)."""

    id: str
    number: int
    incident_key: str
    title: str
    # triggered, acknowledged or resolved.
    status: str
    created_at: datetime
    urgency: str
    # User references ({"id", "summary", ...}) of whoever it is assigned to.
    assignees: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status != "resolved"


@dataclass(slots=True)
class PagerDuty:
    routing_keys: set[str]
    events: list[PagerEvent] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self.enqueue)

    def open_incident(self, dedup_key: str) -> Incident | None:
        for incident in reversed(self.incidents):
            if incident.incident_key == dedup_key and incident.open:
                return incident
        return None

    def incident(self, dedup_key: str) -> Incident | None:
        """The newest incident opened with this key, open or not."""
        for incident in reversed(self.incidents):
            if incident.incident_key == dedup_key:
                return incident
        return None

    async def enqueue(self, request: web.Request) -> web.Response:
        try:
            event = json.loads(await request.read())
        except ValueError:
            return _invalid(["Event object is not valid JSON"])
        if not isinstance(event, dict):
            return _invalid(["Event object must be an object"])
        errors = []
        key = event.get("routing_key")
        if not isinstance(key, str) or len(key) != 32:
            errors.append("'routing_key' is invalid")
        action = event.get("event_action")
        if action not in _ACTIONS:
            errors.append("'event_action' is missing or blank")
        dedup = event.get("dedup_key")
        if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
            errors.append("'dedup_key' is invalid")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                errors.append("'payload' is missing or blank")
            else:
                for name in ("summary", "source", "severity"):
                    if not payload.get(name):
                        errors.append(f"'payload.{name}' is missing or blank")
                if payload.get("severity") and payload["severity"] not in _SEVERITIES:
                    errors.append("'payload.severity' is invalid")
                if len(str(payload.get("summary", ""))) > 1024:
                    errors.append("'payload.summary' is too long")
        elif action in ("acknowledge", "resolve") and not dedup:
            errors.append("'dedup_key' is missing or blank")
        if errors:
            return _invalid(errors)
        if key not in self.routing_keys:
            # PagerDuty accepts the request shape first; an unknown integration key is a 400 too.
            return _invalid(["'routing_key' is invalid"])
        dedup_key = dedup if isinstance(dedup, str) and dedup else uuid.uuid4().hex
        incident = self._apply(str(action), dedup_key, event)
        self.events.append(
            PagerEvent(time.time(), event, dedup_key, None if incident is None else incident.id)
        )
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key},
            status=202,
        )

    def _apply(self, action: str, dedup_key: str, event: dict[str, Any]) -> Incident | None:
        incident = self.open_incident(dedup_key)
        if action == "trigger" and incident is None:
            payload = event["payload"]
            incident = Incident(
                id=pagerduty_id(),
                number=len(self.incidents) + 1,
                incident_key=dedup_key,
                title=str(payload["summary"]),
                status="triggered",
                created_at=datetime.now(UTC).replace(microsecond=0),
                urgency="high" if payload["severity"] in ("critical", "error") else "low",
            )
            self.incidents.append(incident)
        elif incident is not None and action == "acknowledge":
            incident.status = "acknowledged"
        elif incident is not None and action == "resolve":
            incident.status = "resolved"
        return incident


def _invalid(errors: list[str]) -> web.Response:
    return web.json_response(
        {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
        status=400,
    )
