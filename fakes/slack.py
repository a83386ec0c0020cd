"""Slack incoming webhooks: POST /services/<team>/<bot>/<token> with a JSON message.

Errors follow Slack's documented incoming-webhook answers: plain-text bodies such as
`invalid_payload`, `no_text`, `invalid_token` and `no_service`, with 400/403/404.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MAX_ATTACHMENTS = 100


@dataclass(slots=True)
class SlackMessage:
    received_at: float
    channel: str | None
    payload: dict[str, Any]

    def text(self) -> str:
        """Everything a person would read in the message, flattened for asserts and the viewer."""
        parts: list[str] = []
        if self.payload.get("text"):
            parts.append(str(self.payload["text"]))
        for att in self.payload.get("attachments") or []:
            for key in ("pretext", "title", "text", "footer"):
                if att.get(key):
                    parts.append(str(att[key]))
            for f in att.get("fields") or []:
                parts.append(f"{f.get('title', '')}: {f.get('value', '')}")
            for action in att.get("actions") or []:
                parts.append(f"[{action.get('text', '')}]({action.get('url', '')})")
        return "\n".join(parts)


@dataclass(slots=True)
class SlackWorkspace:
    """Accepted webhook paths map to a default channel, like a Slack app's incoming webhooks."""

    webhooks: dict[str, str]  # "T000/B000/secret" -> "#channel"
    messages: list[SlackMessage] = field(default_factory=list)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/services/{team}/{bot}/{token}", self.handle)
        app.router.add_route("*", "/services/{tail:.*}", self.bad_path)

    async def bad_path(self, _: web.Request) -> web.Response:
        return _err(404, "no_service")

    async def handle(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['team']}/{request.match_info['bot']}"
        known = {k.rsplit("/", 1)[0]: k for k in self.webhooks}
        if key not in known:
            return _err(404, "no_service")
        if f"{key}/{request.match_info['token']}" != known[key]:
            return _err(403, "invalid_token")
        ctype = request.content_type
        raw = await request.read()
        if ctype == "application/x-www-form-urlencoded":
            form = await request.post()
            raw = str(form.get("payload", "")).encode()
        elif ctype != "application/json":
            return _err(400, "invalid_payload")
        try:
            payload = json.loads(raw)
        except ValueError:
            return _err(400, "invalid_payload")
        if not isinstance(payload, dict):
            return _err(400, "invalid_payload")
        atts = payload.get("attachments")
        if atts is not None and not isinstance(atts, list):
            return _err(400, "invalid_attachments")
        if atts and len(atts) > MAX_ATTACHMENTS:
            return _err(400, "too_many_attachments")
        if not payload.get("text") and not payload.get("blocks") and not atts:
            return _err(400, "no_text")
        channel = payload.get("channel") or self.webhooks[known[key]]
        self.messages.append(SlackMessage(time.time(), channel, payload))
        return web.Response(text="ok", content_type="text/plain")


def _err(status: int, code: str) -> web.Response:
    return web.Response(status=status, text=code, content_type="text/plain")
