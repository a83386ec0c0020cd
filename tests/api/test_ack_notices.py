"""The ops channel is told who took an alert: an acknowledgement through the API posts a notice
that the committed routing tree, on a real Alertmanager, delivers to #ops-alerts once (never a
resolved message); Alertmanager away, the acknowledgement stands and the answer says so."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api.notices import MAX_NOTES_CHARS, NOTICE_TTL, acknowledgement_notice
from compose.processes import free_port
from tests.api.conftest import as_user, rows
from tests.api.test_escalation import Stack, add_alert, api_app, stack, wait_for

__all__ = ["stack"]  # the fixture, used by name below

pytestmark = pytest.mark.integration


def test_the_notice_names_who_took_which_alert() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    row = {
        "id": "6c1d0000-0000-4000-8000-000000000001",
        "alert_type": "UptimeTargetDown",
        "alert_title": "web-home is down",
        "severity": "critical",
        "service_name": "web",
    }
    notice = acknowledgement_notice(row, "oncall@example.com", "x" * 900, "the operator API", now)
    labels = notice["labels"]
    assert {k: v for k, v in labels.items() if k != "notice_id"} == {
        "alertname": "AlertAcknowledged",
        "kind": "notice",
        "severity": "info",
        "service": "web",
    }
    assert notice["annotations"]["summary"] == "oncall@example.com acknowledged: web-home is down"
    description = notice["annotations"]["description"]
    assert description.startswith("critical · web · UptimeTargetDown · acknowledged via the")
    # Notes are Slack text: bounded.
    assert len(description.split("\nNotes: ", 1)[1]) == MAX_NOTES_CHARS
    assert notice["endsAt"] == "2026-11-30T12:05:00Z"
    assert NOTICE_TTL.total_seconds() == 300
    # Two notices of the same alert are two messages (the route groups by every label).
    again = acknowledgement_notice(row, "oncall@example.com", None, "PagerDuty", now)
    assert again["labels"]["notice_id"] != labels["notice_id"]


async def test_an_acknowledgement_is_told_in_the_ops_channel_once(
    stack: Stack, aiohttp_client: Any, tmp_path: Path
) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    row = add_alert(stack.dsn, service=service, age="1 minute")
    api, _ = await api_app(aiohttp_client, tmp_path, stack)
    resp = await api.put(
        "/api/infrastructure/alerts",
        json={"id": str(row), "action": "acknowledge", "notes": "looking at the pooler"},
        headers=as_user("ops"),
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["ops_notified"] is True

    def told() -> list[str]:
        return [
            m.text()
            for m in stack.slack.messages
            if m.channel == "#ops-alerts" and service in m.text()
        ]

    (text,) = await wait_for("the acknowledgement notice in #ops-alerts", told)
    assert "ops@example.com acknowledged: " + f"{service}-target is down" in text
    assert "acknowledged via the operator API" in text
    assert "Notes: looking at the pooler" in text
    # A notice pages nobody.
    assert not [e for e in stack.pager.events if service in str(e.event)]


async def test_alertmanager_away_the_acknowledgement_stands(
    stack: Stack, aiohttp_client: Any, tmp_path: Path
) -> None:
    """A row that never came from Alertmanager (no labels) is acknowledged without a silence,
    so only the notice needs Alertmanager: away, the acknowledgement stands, is answered with
    ops_notified false, and the failed call is counted."""
    (row,) = rows(
        stack.dsn,
        "INSERT INTO infrastructure_alerts (alert_type, severity, service_name, alert_title,"
        " alert_description) VALUES ('Manual', 'critical', 'web', 'no labels', 'd') RETURNING id",
    )
    away = Stack(stack.dsn, f"http://127.0.0.1:{free_port()}", stack.pager, stack.slack)
    api, _ = await api_app(aiohttp_client, tmp_path, away)
    resp = await api.put(
        "/api/infrastructure/alerts",
        json={"id": str(row[0]), "action": "acknowledge"},
        headers=as_user("ops"),
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["ops_notified"] is False
    assert body["acknowledged_at"] is not None
    metrics = await (await api.get("/metrics")).text()
    assert 'api_alertmanager_errors_total{operation="post_alerts"} 1.0' in metrics
