"""Reconciliation on a real Alertmanager and PostgreSQL: an acknowledged alert that ends while
its silence lasts (Alertmanager then notifies nobody) is resolved once Alertmanager has been
without it for the grace, and its acknowledgement silence expired; an alert still held is left
alone; a manual incident Alertmanager lost is posted again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.alertmanager import rfc3339
from api.reconcile import RECONCILER, exact_silences
from tests.api.conftest import (
    am_alert,
    am_get,
    am_post_alert,
    as_user,
    record,
    rows,
    unique_labels,
)

pytestmark = pytest.mark.integration

GRACE = 300.0


def _state(dsn: str, row_id: uuid.UUID) -> tuple[Any, ...]:
    (row,) = rows(
        dsn,
        "SELECT resolved_at IS NOT NULL, acknowledged_at IS NOT NULL FROM"
        " infrastructure_alerts WHERE id = %s",
        row_id,
    )
    return row


def _audit(dsn: str, row_id: uuid.UUID) -> list[tuple[Any, ...]]:
    return rows(
        dsn,
        "SELECT action, actor_kind FROM infrastructure_audit_log WHERE target_id = %s"
        " ORDER BY occurred_at",
        str(row_id),
    )


async def test_an_alert_that_ended_while_acknowledged_is_resolved_after_the_grace(
    api: TestClient, seeded: tuple[str, Any], alertmanager: str
) -> None:
    dsn, _ = seeded
    ended_labels = unique_labels()
    held_labels = unique_labels()
    for labels in (ended_labels, held_labels):
        am_post_alert(alertmanager, labels)
    ended = await record(dsn, alertmanager, ended_labels)
    held = await record(dsn, alertmanager, held_labels)
    for row in (ended, held):
        resp = await api.put(
            "/api/infrastructure/alerts",
            json={"id": str(row), "action": "acknowledge"},
            headers=as_user("ops"),
        )
        assert resp.status == 200, await resp.text()
    silence_id = (await resp.json())["silence_id"]  # held's
    silences = am_get(f"{alertmanager}/api/v2/silences")
    (ended_silence,) = exact_silences(silences, ended_labels)

    # The alert ends while its silence lasts: Alertmanager tells nobody.
    now = rfc3339(datetime.now(UTC))
    am_post_alert(alertmanager, ended_labels, startsAt=now, endsAt=now)
    assert am_alert(alertmanager, ended_labels, timeout=0) is None

    reconciler = api.app[RECONCILER]
    first = await reconciler.tick(now=1000.0)
    assert first.resolved == ()  # absent, but not for the grace yet
    assert _state(dsn, ended) == (False, True)
    later = await reconciler.tick(now=1000.0 + GRACE)
    assert later.failed is False
    assert ended in later.resolved
    assert held not in later.resolved
    assert _state(dsn, ended) == (True, True)
    assert _state(dsn, held) == (False, True)
    assert ("alert.reconcile_resolve", "system") in _audit(dsn, ended)
    # Its acknowledgement silence is expired; the held alert's stays.
    states = {s["id"]: s["status"]["state"] for s in am_get(f"{alertmanager}/api/v2/silences")}
    assert states[ended_silence] == "expired"
    assert states[silence_id] == "active"
    # Once: the next tick finds nothing to do for it.
    again = await reconciler.tick(now=1000.0 + 2 * GRACE)
    assert ended not in again.resolved
    assert [a for a in _audit(dsn, ended) if a[0] == "alert.reconcile_resolve"] == [
        ("alert.reconcile_resolve", "system")
    ]
    metrics = await (await api.get("/metrics")).text()
    assert 'api_reconciled_total{result="failed"} 0.0' in metrics


async def test_an_alert_back_before_the_grace_is_not_resolved(
    api: TestClient, seeded: tuple[str, Any], alertmanager: str
) -> None:
    """An Alertmanager restart: the alert is gone for a moment, then Prometheus sends it
    again. The absence restarts its clock."""
    dsn, _ = seeded
    labels = unique_labels()
    am_post_alert(alertmanager, labels)
    row = await record(dsn, alertmanager, labels)
    now = rfc3339(datetime.now(UTC))
    am_post_alert(alertmanager, labels, startsAt=now, endsAt=now)
    reconciler = api.app[RECONCILER]
    await reconciler.tick(now=1000.0)
    am_post_alert(alertmanager, labels)  # back
    assert am_alert(alertmanager, labels) is not None
    await reconciler.tick(now=1000.0 + GRACE / 2)
    now = rfc3339(datetime.now(UTC))
    am_post_alert(alertmanager, labels, startsAt=now, endsAt=now)  # gone again
    result = await reconciler.tick(now=1000.0 + GRACE)
    assert row not in result.resolved
    assert _state(dsn, row) == (False, False)


async def test_a_lost_manual_incident_is_posted_again(
    api: TestClient, seeded: tuple[str, Any], alertmanager: str
) -> None:
    dsn, _ = seeded
    title = f"checkout {uuid.uuid4().hex[:8]}"
    resp = await api.post(
        "/api/infrastructure/alerts",
        json={
            "alert_type": "ManualIncident",
            "severity": "critical",
            "service_name": "web",
            "alert_title": title,
            "alert_description": "card payments time out",
        },
        headers=as_user("ops"),
    )
    assert resp.status == 202, await resp.text()
    labels = (await resp.json())["labels"]
    row = await record(dsn, alertmanager, labels)
    # Alertmanager loses it (as in a restart without its data).
    now = datetime.now(UTC)
    am_post_alert(alertmanager, labels, startsAt=rfc3339(now), endsAt=rfc3339(now))
    assert am_alert(alertmanager, labels, timeout=0) is None
    reconciler = api.app[RECONCILER]
    await reconciler.tick(now=1000.0)
    result = await reconciler.tick(now=1000.0 + GRACE)
    assert row in result.reposted
    back = am_alert(alertmanager, labels)
    assert back is not None
    assert back["annotations"]["summary"] == title
    assert _state(dsn, row) == (False, False)
    assert ("alert.reconcile_repost", "system") in _audit(dsn, row)
    # It ends where the incident's maximum duration says, not later.
    ends = datetime.fromisoformat(back["endsAt"].replace("Z", "+00:00"))
    assert ends < now + timedelta(days=8)
