"""Alertmanager's API v2, as far as the operator API uses it: post alerts (manual incidents and
their end), find an alert by its labels, create and expire silences (acknowledgements)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

log = logging.getLogger(__name__)

OPERATIONS = (
    "post_alerts",
    "get_alerts",
    "create_silence",
    "expire_silence",
    "get_silence",
    "get_silences",
)


class AlertmanagerError(Exception):
    """Alertmanager did not do what was asked; `operation` is one of OPERATIONS."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"{operation}: {reason}")
        self.operation = operation
        self.reason = reason


class AlertmanagerUnavailable(AlertmanagerError):
    """No answer, a timeout or a 5xx: it may work on a retry."""


class AlertmanagerRefused(AlertmanagerError):
    """A 4xx: Alertmanager refused what we sent; a retry will not help."""


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def matcher_value(value: str) -> str:
    """A label value quoted for Alertmanager's `filter` matchers."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class Alertmanager:
    def __init__(self, base_url: str, client: httpx.AsyncClient, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.timeout = timeout

    async def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = await self.client.request(
                method, f"{self.base_url}{path}", timeout=self.timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            raise AlertmanagerUnavailable(operation, type(exc).__name__) from None
        if resp.status_code >= 500:
            raise AlertmanagerUnavailable(operation, f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            # Alertmanager's 4xx bodies say what it refused (never anything secret of ours).
            raise AlertmanagerRefused(operation, f"HTTP {resp.status_code}: {resp.text[:200]}")
        return resp

    async def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        await self._call("post_alerts", "POST", "/api/v2/alerts", json=alerts)

    async def unresolved(self, alertname: str | None = None) -> list[dict[str, str]]:
        """The label sets of every alert Alertmanager holds unresolved (silenced, inhibited and
        not yet processed ones too: they still fire), of one alertname if given."""
        params: list[tuple[str, str]] = [
            ("active", "true"),
            ("silenced", "true"),
            ("inhibited", "true"),
            ("unprocessed", "true"),
        ]
        if alertname is not None:
            params.append(("filter", f"alertname={matcher_value(alertname)}"))
        alerts = await self._list("get_alerts", "/api/v2/alerts", params)
        return [dict(a["labels"]) for a in alerts if isinstance(a.get("labels"), dict)]

    async def firing(self, labels: dict[str, str]) -> bool:
        """Whether Alertmanager holds an unresolved alert with exactly these labels."""
        # The alertname filter narrows the answer; the exact comparison decides.
        return labels in await self.unresolved(labels.get("alertname"))

    async def silences(self) -> list[dict[str, Any]]:
        """Every silence Alertmanager holds (active, pending and expired)."""
        return await self._list("get_silences", "/api/v2/silences", [])

    async def _list(
        self, operation: str, path: str, params: list[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        resp = await self._call(operation, "GET", path, params=params)
        try:
            items = resp.json()
        except ValueError:
            raise AlertmanagerUnavailable(operation, "answer is not JSON") from None
        if not isinstance(items, list):
            raise AlertmanagerUnavailable(operation, "answer is not a list")
        return [i for i in items if isinstance(i, dict)]

    async def create_silence(self, silence: dict[str, Any]) -> str:
        resp = await self._call("create_silence", "POST", "/api/v2/silences", json=silence)
        try:
            silence_id = resp.json()["silenceID"]
        except (ValueError, KeyError, TypeError):
            raise AlertmanagerUnavailable("create_silence", "answer has no silenceID") from None
        return str(silence_id)

    async def expire_silence(self, silence_id: str) -> None:
        await self._call(
            "expire_silence", "DELETE", f"/api/v2/silence/{quote(silence_id, safe='')}"
        )

    async def silence_state(self, silence_id: str) -> str | None:
        """A silence's state (active, pending, expired), or None when Alertmanager has no such
        silence (never created, or forgotten after its retention)."""
        try:
            resp = await self._call(
                "get_silence", "GET", f"/api/v2/silence/{quote(silence_id, safe='')}"
            )
        except AlertmanagerRefused as exc:
            if exc.reason.startswith("HTTP 404"):
                return None
            raise
        try:
            state = resp.json()["status"]["state"]
        except (ValueError, KeyError, TypeError):
            raise AlertmanagerUnavailable("get_silence", "answer has no status.state") from None
        return str(state)
