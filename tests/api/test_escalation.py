"""Escalation (api/escalation.py): a critical nobody acknowledged within 15 minutes is escalated
once to the second level, and the escalation ends when the alert is acknowledged or resolved.

Proven on a real Alertmanager running the committed alertmanager.yml (placed by
alertmanager/runtime.py, PagerDuty and Slack pointed at the strict fakes of fakes/sink.py), a
real PostgreSQL migrated to head, and the loop ticked directly (no waiting for its interval).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from psycopg.types.json import Jsonb

from alertmanager.runtime import Placement, write_placed
from api.escalation import ESCALATOR, ROLE, Escalator, escalation_alert, escalation_labels
from api.escalation_config import Escalation
from common.config import ConfigError
from compose.processes import alertmanager_argv, free_port, spawn, stop, wait_ready
from fakes.pagerduty import PagerDuty
from fakes.sink import PAGER, SLACK, make_sink
from fakes.slack import SlackWorkspace
from tests.api.conftest import am_alert, as_user, execute, rows, start_client, write_config
from tests.api.test_roles import LOGIN_GRANTS
from tests.conftest import PG_ADMIN, binary
from tests.unit.test_runbooks import RUNBOOKS, anchors

pytestmark = pytest.mark.integration
T = TypeVar("T")
Client = TestClient[web.Request, web.Application]

ROUTING_KEY = "f" * 32  # the first level's PagerDuty service
ESCALATION_KEY = "e" * 32  # the escalation service
SLACK_PATH = "T0/B0/escalationtest"


@dataclass
class Stack:
    dsn: str
    am: str
    pager: PagerDuty
    slack: SlackWorkspace


@pytest.fixture
async def stack(
    seeded: tuple[str, dict[str, uuid.UUID]], aiohttp_server: Any, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The seeded database, the notification sink, and a real Alertmanager on the committed
    routing tree (no recorder: the rows are written by the tests)."""
    binary("prometheus-alertmanager", "alertmanager")
    dsn, _ = seeded
    sink: TestServer = await aiohttp_server(
        make_sink({SLACK_PATH: "#ops-alerts"}, [ROUTING_KEY, ESCALATION_KEY])
    )
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "slack_webhook_url").write_text(
        f"http://127.0.0.1:{sink.port}/services/{SLACK_PATH}\n"
    )
    (secrets / "pagerduty_routing_key").write_text(ROUTING_KEY + "\n")
    (secrets / "pagerduty_escalation_routing_key").write_text(ESCALATION_KEY + "\n")
    config = write_placed(
        tmp_path / "am.yml",
        Placement(secrets_dir=secrets, pagerduty_url=f"http://127.0.0.1:{sink.port}/v2/enqueue"),
    )
    port = free_port()
    proc = spawn(alertmanager_argv(config, port, tmp_path / "am-data"), tmp_path / "am.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", proc=proc)
        yield Stack(dsn, f"http://127.0.0.1:{port}", sink.app[PAGER], sink.app[SLACK])
    finally:
        stop(proc)


async def api_app(
    aiohttp_client: Any, tmp_path: Path, stack: Stack, **overrides: Any
) -> tuple[Client, Escalator]:
    home = tmp_path / uuid.uuid4().hex[:8]
    home.mkdir()
    cfg, secrets, _ = write_config(
        home,
        database={"conninfo": stack.dsn},
        alertmanager_url=stack.am,
        **overrides,
    )
    client = await start_client(aiohttp_client, cfg, secrets)
    return client, client.app[ESCALATOR]


def add_alert(
    dsn: str,
    *,
    service: str,
    severity: str = "critical",
    age: str = "20 minutes",
    acknowledged: bool = False,
    name: str = "UptimeTargetDown",
) -> uuid.UUID:
    """An alert row as the recorder writes one (labels in alert_rule), fired `age` ago."""
    target = f"{service}-target"
    labels = {"alertname": name, "severity": severity, "service": service, "target": target}
    annotations = {"summary": f"{target} is down", "runbook_url": "http://rb/UptimeTargetDown.md"}
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "INSERT INTO infrastructure_alerts (alert_id, alert_type, severity, service_name,"
            " alert_title, alert_description, alert_rule, triggered_at, acknowledged_at)"
            " VALUES (%s, %s, %s, %s, %s, 'd', %s, now() - %s::interval,"
            " CASE WHEN %s THEN now() END) RETURNING id",
            (
                f"test:{uuid.uuid4().hex}",
                name,
                severity,
                service,
                f"{target} is down",
                Jsonb({"labels": labels, "annotations": annotations}),
                age,
                acknowledged,
            ),
        ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def row_labels(dsn: str, row_id: uuid.UUID) -> dict[str, str]:
    """The labels the escalation of this row carries (rebuilt from the row, as the loop does)."""
    with psycopg.connect(dsn) as conn:
        conn.row_factory = psycopg.rows.dict_row  # type: ignore[assignment]
        row = conn.execute(
            "SELECT id, alert_type, service_name, alert_rule FROM infrastructure_alerts"
            " WHERE id = %s",
            (row_id,),
        ).fetchone()
    assert row is not None
    return escalation_labels(dict(row))


def escalated(dsn: str, row_id: uuid.UUID) -> tuple[Any, Any]:
    ((at, ended),) = rows(
        dsn,
        "SELECT escalated_at, escalation_ended_at FROM infrastructure_alerts WHERE id = %s",
        row_id,
    )
    return at, ended


def audit(dsn: str, row_id: uuid.UUID) -> list[tuple[Any, ...]]:
    return rows(
        dsn,
        "SELECT action, actor_kind, actor_user_id, actor_machine FROM infrastructure_audit_log"
        " WHERE target_id = %s ORDER BY occurred_at, action",
        str(row_id),
    )


async def wait_for(what: str, check: Callable[[], T | None], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def pages(stack: Stack, service: str) -> list[dict[str, Any]]:
    """PagerDuty events about the escalations of `service` (the group's summary names it)."""
    return [
        e.event
        for e in stack.pager.events
        if "Escalation" in e.event.get("payload", {}).get("summary", "")
        and service in e.event.get("payload", {}).get("summary", "")
    ]


def metric(client: Client, result: str) -> float:
    """api_escalations_total{result} of this app, as its /metrics would show it."""
    escalations = client.app[ESCALATOR].services.metrics.escalations
    return float(escalations.labels(result)._value.get())


# --- the escalation alert, without a database -------------------------------------------------


def test_the_escalation_alert_names_the_alert_and_how_long_it_waited() -> None:
    row_id = uuid.uuid4()
    triggered = datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
    row = {
        "id": row_id,
        "alert_type": "UptimeTargetDown",
        "service_name": "web",
        "alert_title": "web is down",
        "triggered_at": triggered,
        "alert_rule": {
            "labels": {"alertname": "UptimeTargetDown", "target": "web", "region": "eu", "x": "y"},
            "annotations": {"runbook_url": "http://rb/UptimeTargetDown.md#uptimetargetdown"},
        },
    }
    cfg = Escalation()
    alert = escalation_alert(row, triggered + timedelta(minutes=17), cfg, "http://rb/Escalation.md")
    assert alert["labels"] == {
        "alertname": "Escalation",
        "severity": "critical",
        "escalation": "1",
        "escalated_alertname": "UptimeTargetDown",
        "service": "web",
        "escalated_alert_id": str(row_id),
        "target": "web",
        "region": "eu",
    }
    notes = alert["annotations"]
    assert "unacknowledged for 17 min" in notes["summary"]
    assert "within 15 min" in notes["description"]
    assert notes["runbook_url"] == "http://rb/Escalation.md"
    assert notes["escalated_runbook_url"] == "http://rb/UptimeTargetDown.md#uptimetargetdown"
    assert alert["startsAt"] == "2026-01-02T03:17:00Z"
    assert alert["endsAt"] == "2026-01-03T03:17:00Z"  # max_duration: 24 h


def test_the_runbook_it_links_has_the_heading_and_sections() -> None:
    # Not a Prometheus rule, so tests/unit/test_runbooks.py does not see this alert's link.
    url = escalation_alert(
        {
            "id": uuid.uuid4(),
            "alert_type": "A",
            "service_name": "s",
            "alert_title": "t",
            "triggered_at": datetime.now(UTC),
            "alert_rule": None,
        },
        datetime.now(UTC),
        Escalation(),
        Escalator.runbook_for("http://rb/runbooks"),
    )["annotations"]["runbook_url"]
    page, _, anchor = url.removeprefix("http://rb/runbooks/").partition("#")
    headings = anchors((RUNBOOKS / page).read_text())
    assert {anchor, "meaning", "confirm", "remediate"} <= headings


def test_the_check_interval_cannot_exceed_the_escalation_time(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="check_interval"):
        write_config(tmp_path, escalation={"after": "1m", "check_interval": "2m"})
    cfg, _, _ = write_config(tmp_path, escalation={"after": "5m"})
    assert (cfg.escalation.after, cfg.escalation.check_interval) == (300.0, 30.0)


# --- on the real Alertmanager ------------------------------------------------------------------


async def test_an_unacknowledged_critical_is_escalated_once_to_the_second_level(
    stack: Stack, aiohttp_client: Any, tmp_path: Path
) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    due = add_alert(stack.dsn, service=service)
    acked = add_alert(stack.dsn, service=service, acknowledged=True)
    warning = add_alert(stack.dsn, service=service, severity="warning")
    recent = add_alert(stack.dsn, service=service, age="5 minutes")
    api, escalator = await api_app(aiohttp_client, tmp_path, stack)

    result = await escalator.tick()
    assert result.failed == ()
    assert due in result.escalated
    assert {acked, warning, recent}.isdisjoint(result.escalated)
    assert escalated(stack.dsn, due)[0] is not None
    for other in (acked, warning, recent):
        assert escalated(stack.dsn, other) == (None, None)

    # Alertmanager holds it, and its `escalation` receiver pages the escalation service and
    # calls #ops-alerts with the mention; the first level is not paged again.
    labels = row_labels(stack.dsn, due)
    assert am_alert(stack.am, labels) is not None
    (page,) = await wait_for("the escalation page", lambda: pages(stack, service))
    assert page["routing_key"] == ESCALATION_KEY
    assert page["event_action"] == "trigger"
    assert f"{service}-target is down" in page["payload"]["summary"]

    def mention() -> list[str]:
        return [
            m.text()
            for m in stack.slack.messages
            if m.channel == "#ops-alerts" and "Escalation" in m.text() and service in m.text()
        ]

    (message,) = await wait_for("the Slack message with the mention", mention)
    assert message.startswith(f"<!here> Escalation: UptimeTargetDown on {service} unacknowledged")
    assert "Escalation.md#escalation" in message

    # Visible on the row, in the API's list, and audited as the system.
    resp = await api.get("/api/infrastructure/alerts", headers=as_user("ops"))
    items = {a["id"]: a for a in (await resp.json())["active_alerts"]}
    assert items[str(due)]["escalated_at"].endswith("Z")
    assert "escalated_at" not in items[str(acked)]
    assert audit(stack.dsn, due) == [
        ("alert.escalate", "system", uuid.UUID(int=0), None),
    ]
    assert metric(api, "escalated") == len(result.escalated)

    # A second tick escalates nothing again.
    again = await escalator.tick()
    assert due not in again.escalated
    assert len(audit(stack.dsn, due)) == 1
    assert len(pages(stack, service)) == 1


async def test_two_replicas_racing_escalate_exactly_once(
    stack: Stack, aiohttp_client: Any, tmp_path: Path
) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    ids = {add_alert(stack.dsn, service=service, name=f"Race{n}") for n in range(5)}
    _, first = await api_app(aiohttp_client, tmp_path, stack)
    _, second = await api_app(aiohttp_client, tmp_path, stack)

    results = await asyncio.gather(*(r.tick() for r in (first, second, first, second)))
    claimed = [i for r in results for i in r.escalated if i in ids]
    assert sorted(claimed) == sorted(ids)  # each row once, whoever got it
    assert all(r.failed == () for r in results)
    for row_id in ids:
        assert [a[0] for a in audit(stack.dsn, row_id)] == ["alert.escalate"]
        assert am_alert(stack.am, row_labels(stack.dsn, row_id)) is not None


async def test_acknowledging_or_resolving_the_alert_ends_its_escalation(
    stack: Stack, aiohttp_client: Any, tmp_path: Path
) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    to_ack = add_alert(stack.dsn, service=service, name="AckedLater")
    to_resolve = add_alert(stack.dsn, service=service, name="ResolvedLater")
    api, escalator = await api_app(aiohttp_client, tmp_path, stack)
    assert {to_ack, to_resolve} <= set((await escalator.tick()).escalated)
    ack_labels = row_labels(stack.dsn, to_ack)
    resolve_labels = row_labels(stack.dsn, to_resolve)
    assert am_alert(stack.am, ack_labels) is not None

    # Acknowledged through the API, as a person does; resolved as the recorder records it.
    resp = await api.put(
        "/api/infrastructure/alerts",
        json={"id": str(to_ack), "action": "acknowledge"},
        headers=as_user("ops"),
    )
    assert resp.status == 200
    execute(
        stack.dsn, "UPDATE infrastructure_alerts SET resolved_at = now() WHERE id = %s", to_resolve
    )

    result = await escalator.tick()
    assert {to_ack, to_resolve} <= set(result.ended)
    assert am_alert(stack.am, ack_labels, timeout=0) is None
    assert am_alert(stack.am, resolve_labels, timeout=0) is None
    for row_id in (to_ack, to_resolve):
        assert escalated(stack.dsn, row_id)[1] is not None
        # (The acknowledgement has its own audit row, by the person.)
        assert [a[0] for a in audit(stack.dsn, row_id) if a[1] == "system"] == [
            "alert.escalate",
            "alert.escalation_end",
        ]
    assert metric(api, "ended") == len(result.ended)
    # Ended once: the next tick has nothing to end, and never escalates them again.
    again = await escalator.tick()
    assert {to_ack, to_resolve}.isdisjoint(again.ended + again.escalated)


async def test_alertmanager_down_leaves_the_alert_unmarked_and_the_next_tick_escalates_it(
    stack: Stack, aiohttp_client: Any, tmp_path: Path
) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    due = add_alert(stack.dsn, service=service)
    api, escalator = await api_app(aiohttp_client, tmp_path, stack)
    alertmanager = escalator.services.alertmanager
    alertmanager.base_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    result = await escalator.tick()
    assert result.failed == ("escalate",)
    assert result.escalated == ()
    assert escalated(stack.dsn, due) == (None, None)
    assert audit(stack.dsn, due) == []
    assert metric(api, "failed") == 1
    metrics = escalator.services.metrics
    assert metrics.alertmanager_errors.labels("post_alerts")._value.get() == 1

    alertmanager.base_url = stack.am  # Alertmanager is back
    result = await escalator.tick()
    assert due in result.escalated
    assert escalated(stack.dsn, due)[0] is not None
    assert am_alert(stack.am, row_labels(stack.dsn, due)) is not None
    resp = await api.get("/metrics")
    assert 'api_escalations_total{result="failed"} 1.0' in await resp.text()


async def test_the_loop_runs_with_the_app(
    stack: Stack, aiohttp_client: Any, tmp_path: Path
) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    due = add_alert(stack.dsn, service=service)
    await api_app(
        aiohttp_client,
        tmp_path,
        stack,
        escalation={"enabled": True, "check_interval": "100ms"},
    )
    await wait_for("the loop's escalation", lambda: escalated(stack.dsn, due)[0])


# --- the database role it acts as -------------------------------------------------------------


@pytest.fixture
def login_role(seeded: tuple[str, Any]) -> Iterator[str]:
    """A NOINHERIT login role with the documented request grants (tests/api/test_roles.py)."""
    dsn, _ = seeded
    role = f"wsinfra_api_{uuid.uuid4().hex[:8]}"
    execute(PG_ADMIN, f"CREATE ROLE {role} LOGIN NOINHERIT")
    try:
        execute(dsn, LOGIN_GRANTS.format(role=role))
        yield role
    finally:
        execute(dsn, 'DROP POLICY "wsinfra api sets up machine users" ON public.user_profiles')
        execute(dsn, f"DROP OWNED BY {role}")
        execute(PG_ADMIN, f"DROP ROLE {role}")


async def test_the_login_role_escalates_once_it_is_a_member_of_the_escalation_role(
    stack: Stack, login_role: str, aiohttp_client: Any, tmp_path: Path
) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    due = add_alert(stack.dsn, service=service)
    warning = add_alert(stack.dsn, service=service, severity="warning")
    conninfo = stack.dsn.replace("user=postgres", f"user={login_role}")
    api, escalator = await api_app(
        aiohttp_client, tmp_path, Stack(conninfo, stack.am, stack.pager, stack.slack)
    )
    # Not a member yet: refused, counted, nothing marked; requests still work.
    result = await escalator.tick()
    assert result.failed == ("escalate", "end")
    assert escalated(stack.dsn, due) == (None, None)
    assert metric(api, "failed") == 2

    execute(PG_ADMIN, f"GRANT {ROLE} TO {login_role}")
    result = await escalator.tick()
    assert result.failed == ()
    assert due in result.escalated
    assert audit(stack.dsn, due)[0][:2] == ("alert.escalate", "system")
    # As the escalation role it sees critical alerts only, and may not write the spec's columns.
    with psycopg.connect(conninfo) as conn:
        conn.execute(f"SET ROLE {ROLE}")
        seen = {r[0] for r in conn.execute("SELECT id FROM infrastructure_alerts").fetchall()}
        assert due in seen
        assert warning not in seen
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE infrastructure_alerts SET acknowledged_at = now()")
