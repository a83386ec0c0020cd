"""PagerDuty Events API v2: POST /v2/enqueue, as documented (202 on success, 400 with errors)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_ACTIONS = ("trigger", "acknowledge", "resolve")
_SEVERITIES = ("critical", "error", "warning", "info")


@dataclass(slots=True)
class PagerEvent:
    received_at: float
    event: dict[str, Any]


@dataclass(slots=True)
class PagerDuty:
    routing_keys: set[str]
    events: list[PagerEvent] = field(default_factory=list)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self.enqueue)

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
        elif action in ("acknowledge", "resolve") and not event.get("dedup_key"):
            errors.append("'dedup_key' is missing or blank")
        if errors:
            return _invalid(errors)
        if key not in self.routing_keys:
            # PagerDuty accepts the request shape first; an unknown integration key is a 400 too.
            return _invalid(["'routing_key' is invalid"])
        self.events.append(PagerEvent(time.time(), event))
        return web.json_response(
            {
                "status": "success",
                "message": "Event processed",
                "dedup_key": event.get("dedup_key") or "generated",
            },
            status=202,
        )


def _invalid(errors: list[str]) -> web.Response:
    return web.json_response(
        {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
        status=400,
    )
