"""Acknowledge, resolve and manual incidents on a REAL Alertmanager (started by the session) and
a real PostgreSQL: silences match exactly the alert's labels and end by the TTL, a rule alert
still firing is not marked resolved, manual incidents appear in and leave Alertmanager, every
write is audited with before/after, and when Alertmanager or the audit fails nothing is kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from compose.processes import free_port
from tests.api.conftest import (
    USERS,
    am_alert,
    am_get,
    am_post_alert,
    as_user,
    execute,
    record,
    rows,
    start_client,
    unique_labels,
    write_config,
)

pytestmark = pytest.mark.integration
URL = "/api/infrastructure/alerts"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _audit(dsn: str) -> list[tuple[Any, ...]]:
    return rows(
        dsn,
        "SELECT action, actor_user_id, actor_kind, target_table, target_id, before, after,"
        " request_id FROM infrastructure_audit_log ORDER BY occurred_at",
    )


async def test_acknowledge_silences_exactly_that_alert_until_the_ttl(
    api: TestClient, seeded: tuple[str, Any], alertmanager: str
) -> None:
    dsn, _ = seeded
    labels = unique_labels(region="eu-west")
    am_post_alert(alertmanager, labels)
    sibling = {**labels, "region": "us-east"}  # same alert elsewhere: must stay unsilenced
    am_post_alert(alertmanager, sibling)
    alert_id = await record(dsn, alertmanager, labels)

    before = datetime.now(UTC)
    resp = await api.put(
        URL,
        json={"id": str(alert_id), "action": "acknowledge", "notes": "looking at the LB"},
        headers={**as_user("ops"), "X-Request-Id": "req-ack-1"},
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["state"] == "acknowledged"
    assert body["acknowledged_by"] == str(USERS["ops"])
    assert resp.headers["X-Request-Id"] == "req-ack-1"

    (silence,) = [
        s for s in am_get(f"{alertmanager}/api/v2/silences") if s["id"] == body["silence_id"]
    ]
    assert silence["status"]["state"] == "active"
    assert sorted(
        (m["name"], m["value"], m["isRegex"], m.get("isEqual", True)) for m in silence["matchers"]
    ) == sorted((k, v, False, True) for k, v in labels.items())
    ends = _time(silence["endsAt"])
    slack = timedelta(seconds=1)
    assert (
        before + timedelta(minutes=10) - slack <= ends <= datetime.now(UTC) + timedelta(minutes=10)
    )
    assert _time(body["silence_ends_at"]) == ends
    assert silence["createdBy"] == "ops@example.com"
    assert "ops@example.com" in silence["comment"]
    assert "looking at the LB" in silence["comment"]

    assert am_alert(alertmanager, labels)["status"]["silencedBy"] == [silence["id"]]  # type: ignore[index]
    assert am_alert(alertmanager, sibling)["status"]["silencedBy"] == []  # type: ignore[index]

    assert rows(
        dsn,
        "SELECT acknowledged_by, acknowledged_at IS NOT NULL FROM infrastructure_alerts WHERE id = %s",
        alert_id,
    ) == [(USERS["ops"], True)]
    ((action, actor, kind, table, target, old, new, request_id),) = _audit(dsn)
    assert (action, actor, kind, table, target, request_id) == (
        "alert.acknowledge",
        USERS["ops"],
        "jwt",
        "infrastructure_alerts",
        str(alert_id),
        "req-ack-1",
    )
    assert old["acknowledged_by"] is None
    assert new["acknowledged_by"] == str(USERS["ops"])
    assert new["alertmanager"]["silence_id"] == silence["id"]


async def test_resolving_a_rule_alert_still_firing_keeps_it_active_with_the_notes(
    api: TestClient, seeded: tuple[str, Any], alertmanager: str
) -> None:
    dsn, _ = seeded
    labels = unique_labels()
    am_post_alert(alertmanager, labels)
    alert_id = await record(dsn, alertmanager, labels)

    resp = await api.put(
        URL,
        json={"id": str(alert_id), "action": "resolve", "notes": "restarted the pods"},
        headers=as_user("developer"),
    )
    assert resp.status == 200
    body = await resp.json()
    assert (body["state"], body["resolved_at"], body["resolution_notes"]) == (
        "still_firing",
        None,
        "restarted the pods",
    )
    active = (await (await api.get(URL, headers=as_user("developer"))).json())["active_alerts"]
    assert str(alert_id) in {a["id"] for a in active}
    assert rows(
        dsn,
        "SELECT resolved_by, resolution_notes, resolved_at FROM infrastructure_alerts WHERE id = %s",
        alert_id,
    ) == [(USERS["developer"], "restarted the pods", None)]

    # Once Alertmanager no longer has it firing, resolving it ends it.
    am_post_alert(alertmanager, labels, endsAt=datetime.now(UTC).isoformat())
    assert am_alert(alertmanager, labels, timeout=0) is None
    resp = await api.put(
        URL, json={"id": str(alert_id), "action": "resolve"}, headers=as_user("developer")
    )
    body = await resp.json()
    assert body["state"] == "resolved"
    assert body["resolution_notes"] == "restarted the pods"  # kept: no new notes given
    assert [a[0] for a in _audit(dsn)] == ["alert.resolve", "alert.resolve"]


async def test_a_manual_incident_is_posted_then_recorded_then_resolved_in_alertmanager(
    api: TestClient, seeded: tuple[str, Any], alertmanager: str
) -> None:
    dsn, _ = seeded
    resp = await api.post(
        URL,
        json={
            "alert_type": "PaymentsDegraded",
            "severity": "critical",
            "service_name": "payments",
            "alert_title": "Card payments failing",
            "alert_description": "Support: 30 tickets since 10:00",
            "metric_threshold": 5,
            "alert_rule": {"source": "support"},
        },
        headers=as_user("ops"),
    )
    assert resp.status == 202, await resp.text()
    body = await resp.json()
    incident = body["incident_id"]
    labels = {
        "alertname": "PaymentsDegraded",
        "severity": "critical",
        "service": "payments",
        "source": "manual",
        "incident_id": incident,
    }
    assert body == {"incident_id": incident, "status": "posted", "labels": labels}
    alert = am_alert(alertmanager, labels)
    assert alert is not None
    assert alert["annotations"] == {
        "summary": "Card payments failing",
        "description": "Support: 30 tickets since 10:00",
        "runbook_url": "http://127.0.0.1:19700/runbooks/ManualIncident.md#manualincident",
        "created_by": "ops@example.com",
        "threshold": "5.0",
        "alert_rule": '{"source": "support"}',
    }
    # It fires until resolved, not until Alertmanager's resolve_timeout.
    assert _time(alert["endsAt"]) > datetime.now(UTC) + timedelta(days=6)
    ((action, actor, kind, table, target, old, new, _),) = _audit(dsn)
    assert (action, actor, kind, table, target, old) == (
        "alert.create",
        USERS["ops"],
        "jwt",
        "infrastructure_alerts",
        incident,
        None,
    )
    assert new["alert"]["labels"] == labels

    # The recorder stores it when Alertmanager notifies it; it shows like any alert.
    alert_id = await record(dsn, alertmanager, labels)
    doc = await (await api.get(URL, headers=as_user("admin"))).json()
    (item,) = [a for a in doc["active_alerts"] if a["id"] == str(alert_id)]
    assert (item["alert_type"], item["service_name"], item["alert_title"]) == (
        "PaymentsDegraded",
        "payments",
        "Card payments failing",
    )

    resp = await api.put(
        URL,
        json={"id": str(alert_id), "action": "resolve", "notes": "PSP fixed their side"},
        headers=as_user("admin"),
    )
    assert resp.status == 200
    assert (await resp.json())["state"] == "resolved"
    assert am_alert(alertmanager, labels, timeout=0) is None  # ended in Alertmanager too
    assert rows(
        dsn,
        "SELECT resolved_by, resolved_at IS NOT NULL FROM infrastructure_alerts WHERE id = %s",
        alert_id,
    ) == [(USERS["admin"], True)]
    assert [a[0] for a in _audit(dsn)] == ["alert.create", "alert.resolve"]


@pytest.fixture
async def api_without_alertmanager(
    seeded: tuple[str, Any], aiohttp_client: Any, tmp_path: Path
) -> TestClient:
    dsn, _ = seeded
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn},
        alertmanager_url=f"http://127.0.0.1:{free_port()}",
        alertmanager_timeout="2s",
    )
    return await start_client(aiohttp_client, cfg, secrets)


async def test_alertmanager_down_is_503_and_nothing_is_written(
    api_without_alertmanager: TestClient, seeded: tuple[str, Any], alertmanager: str
) -> None:
    api = api_without_alertmanager
    dsn, ids = seeded
    resp = await api.post(
        URL,
        json={
            "alert_type": "X",
            "severity": "info",
            "service_name": "web",
            "alert_title": "t",
            "alert_description": "d",
        },
        headers=as_user("admin"),
    )
    assert resp.status == 503
    assert (await resp.json())["error"] == "alertmanager_unavailable"
    # An alert recorded from Alertmanager (labels) needs a silence to be acknowledged.
    labels = unique_labels()
    am_post_alert(alertmanager, labels)
    alert_id = await record(dsn, alertmanager, labels)
    resp = await api.put(
        URL, json={"id": str(alert_id), "action": "acknowledge"}, headers=as_user("admin")
    )
    assert resp.status == 503
    resp = await api.put(
        URL, json={"id": str(alert_id), "action": "resolve"}, headers=as_user("admin")
    )
    assert resp.status == 503
    assert rows(dsn, "SELECT count(*) FROM infrastructure_audit_log") == [(0,)]
    assert rows(
        dsn,
        "SELECT acknowledged_by, resolved_by FROM infrastructure_alerts WHERE id = %s",
        alert_id,
    ) == [(None, None)]
    metrics = await (await api.get("/metrics")).text()
    assert 'api_alertmanager_errors_total{operation="post_alerts"} 1.0' in metrics
    assert 'api_alertmanager_errors_total{operation="create_silence"} 1.0' in metrics
    assert 'api_alertmanager_errors_total{operation="get_alerts"} 1.0' in metrics
    assert 'api_requests_rejected_total{reason="alertmanager_unavailable"} 3.0' in metrics
    assert ids  # the seeded rows are untouched too
    assert rows(
        dsn, "SELECT count(*) FROM infrastructure_alerts WHERE acknowledged_by IS NOT NULL"
    ) == [(0,)]


async def test_an_audit_row_that_cannot_be_written_aborts_the_write_and_undoes_the_silence(
    api: TestClient, seeded: tuple[str, Any], alertmanager: str
) -> None:
    dsn, _ = seeded
    labels = unique_labels()
    am_post_alert(alertmanager, labels)
    alert_id = await record(dsn, alertmanager, labels)
    execute(dsn, "REVOKE INSERT ON infrastructure_audit_log FROM authenticated")

    resp = await api.put(
        URL, json={"id": str(alert_id), "action": "acknowledge"}, headers=as_user("ops")
    )
    assert resp.status == 403
    assert rows(
        dsn, "SELECT acknowledged_by FROM infrastructure_alerts WHERE id = %s", alert_id
    ) == [(None,)]
    # The silence was created before the audit insert failed, and has been expired again.
    mine = [
        s
        for s in am_get(f"{alertmanager}/api/v2/silences")
        if {m["name"]: m["value"] for m in s["matchers"]} == labels
    ]
    assert [s["status"]["state"] for s in mine] == ["expired"]
    assert am_alert(alertmanager, labels)["status"]["silencedBy"] == []  # type: ignore[index]
    metrics = await (await api.get("/metrics")).text()
    assert 'api_alertmanager_compensations_total{result="undone"} 1.0' in metrics


async def test_an_incident_whose_audit_fails_is_ended_again_in_alertmanager(
    api: TestClient, seeded: tuple[str, Any], alertmanager: str
) -> None:
    dsn, _ = seeded
    execute(dsn, "REVOKE INSERT ON infrastructure_audit_log FROM authenticated")
    name = f"Undone{uuid.uuid4().hex[:8]}"
    resp = await api.post(
        URL,
        json={
            "alert_type": name,
            "severity": "critical",
            "service_name": "web",
            "alert_title": "t",
            "alert_description": "d",
        },
        headers=as_user("admin"),
    )
    assert resp.status == 403
    # It was posted (the audit insert comes after), then ended: nothing pages for it.
    assert not [
        a for a in am_get(f"{alertmanager}/api/v2/alerts") if a["labels"]["alertname"] == name
    ]
    metrics = await (await api.get("/metrics")).text()
    assert 'api_alertmanager_compensations_total{result="undone"} 1.0' in metrics
