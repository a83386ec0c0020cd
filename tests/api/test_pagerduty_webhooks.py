"""PagerDuty v3 webhooks into the operator API (issue 12, "Acknowledgements from the pager").

Deliveries are built by the strict fake (fakes/pagerduty_webhooks.py) exactly as PagerDuty
documents them. The incident is matched to the alert rows through the dedup key Alertmanager
gave PagerDuty: one test runs the committed alertmanager.yml on a real Alertmanager with the
recorder and the fake PagerDuty, and proves the derivation end to end; the others store
notifications the way the recorder does (recorder.store.PgStore) with Alertmanager's group keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from aiohttp.test_utils import TestClient

from alertmanager.runtime import Placement, load_committed, write_placed
from api.app import make_app
from api.cli import main as cli_main
from api.config import DEFAULT_PAGER_ROUTE_KEYS
from api.pagerduty import incident_rows, paged_by, route_matchers, signatures, verified
from common.config import ConfigError
from compose.processes import alertmanager_argv, free_port, spawn, stop, wait_ready
from fakes.pagerduty import Incident, PagerDuty, pagerduty_id
from fakes.pagerduty_webhooks import USER_AGENT, Delivery, User, WebhookSender, sign
from fakes.sink import PAGER, SLACK, make_sink
from recorder.app import make_app as make_recorder
from recorder.config import Database as RecorderDatabase
from recorder.config import Secrets as RecorderSecrets
from recorder.payloads import parse_alertmanager
from recorder.store import PgStore
from tests.api.conftest import (
    NO_PROFILE,
    PAGERDUTY_MACHINE,
    PAGERDUTY_SECRET,
    USERS,
    am_post_alert,
    execute,
    pagerduty_config,
    rows,
    start_client,
    write_config,
)
from tests.api.test_roles import LOGIN_GRANTS
from tests.conftest import PG_ADMIN, binary

URL = "/api/infrastructure/webhooks/pagerduty"
# The first level's pager route (the escalation route, api/escalation.py, precedes it).
PAGER_ROUTE = '{}/{severity="critical"}'
assert PAGER_ROUTE in DEFAULT_PAGER_ROUTE_KEYS
RECORDER_ROUTE = "{}/{}"
# A person with an account here, and who they are in PagerDuty.
ALICE = uuid.UUID("00000000-0000-4000-8000-0000000a11ce")
ALICE_PD = User("PALICE1", "Alice Example")
# Mapped to an email no account has: recorded as the machine user.
GHOST_PD = User("PGHOST1", "Ghost")
RESPONDERS = {ALICE_PD.id: "Alice@Example.com", GHOST_PD.id: "ghost@example.com"}
SENDER = WebhookSender((PAGERDUTY_SECRET,))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def group_key(route: str, group_labels: dict[str, str]) -> str:
    """Alertmanager's group key (dispatch: aggrGroup.GroupKey): the route key, ":", the group's
    labels as Go prints a model.LabelSet (sorted, `name="value"`, joined by ", ")."""
    inner = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(group_labels.items()))
    return f"{route}:{{{inner}}}"


def incident(key: str | None) -> Incident:
    return Incident(
        id=pagerduty_id(),
        number=7,
        incident_key=key or "",
        title="UptimeTargetDown web",
        status="triggered",
        created_at=datetime.now(UTC).replace(microsecond=0),
        urgency="high",
    )


# --- without a database ------------------------------------------------------------------


_MATCHER = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"(.*)"$')


def _route_keys(route: dict[str, Any], parent: str | None, out: list[tuple[str, str, Any]]) -> None:
    """(route key, receiver, group_by) of every route, as Alertmanager's Route.Key() builds it:
    the parent's key, "/", the route's matchers sorted and printed name, op, quoted value."""
    matchers = []
    for text in route.get("matchers", []):
        m = _MATCHER.match(text)
        assert m is not None, text
        name, op, value = m.groups()
        matchers.append((name, op, value))
    key = "{" + ",".join(f"{n}{op}{json.dumps(v)}" for n, op, v in sorted(matchers)) + "}"
    if parent is not None:
        key = f"{parent}/{key}"
    out.append((key, route.get("receiver", ""), route.get("group_by")))
    for child in route.get("routes", []):
        _route_keys(child, key, out)


def test_the_default_route_keys_are_the_committed_pager_routes() -> None:
    doc = load_committed()
    paging = {r["name"] for r in doc["receivers"] if r.get("pagerduty_configs")}
    found: list[tuple[str, str, Any]] = []
    _route_keys(doc["route"], None, found)
    pager = [(key, group_by) for key, receiver, group_by in found if receiver in paging]
    assert tuple(key for key, _ in pager) == DEFAULT_PAGER_ROUTE_KEYS
    # The dedup key is recomputed from the recorder's group key: both routes must group alike
    # (neither overrides the root's group_by).
    (recorder,) = [group_by for key, receiver, group_by in found if receiver == "recorder"]
    assert recorder is None
    assert all(group_by is None for _, group_by in pager)
    assert doc["route"]["group_by"] == ["alertname", "service"]


def test_signatures_are_checked_as_pagerduty_documents() -> None:
    body = json.dumps({"event": {"id": "1"}}).encode()
    header = sign(body, ("old-secret-abcdefghijkl", PAGERDUTY_SECRET))
    # PagerDuty's own sample verifier (docs: "Verifying Signatures"), applied to the fake.
    want = "v1=" + hmac.new(PAGERDUTY_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert any(hmac.compare_digest(want, item) for item in header.split(","))
    assert verified(PAGERDUTY_SECRET.encode(), body, signatures(header.encode()))
    assert not verified(b"another-secret-entirely", body, signatures(header.encode()))
    assert not verified(PAGERDUTY_SECRET.encode(), body + b" ", signatures(header.encode()))
    only_v0 = header.replace("v1=", "v0=").encode()
    assert signatures(only_v0) == []
    assert signatures(b" v1=ABC , v2=def,garbage") == [b"abc"]


def test_the_incident_matches_the_paged_alerts_of_the_recorded_group() -> None:
    labels = {"alertname": "UptimeTargetDown", "service": "web"}
    recorded = group_key(RECORDER_ROUTE, labels)
    key = _sha256(group_key(PAGER_ROUTE, labels))
    critical, warning, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    groups = [
        (warning, recorded, {**labels, "severity": "warning", "target": "b"}),
        (critical, recorded, {**labels, "severity": "critical", "target": "a"}),
        (other, group_key(RECORDER_ROUTE, {**labels, "service": "api"}), {"severity": "critical"}),
    ]
    assert incident_rows(groups, key, DEFAULT_PAGER_ROUTE_KEYS) == [critical]
    assert incident_rows(groups, key.upper(), DEFAULT_PAGER_ROUTE_KEYS) == [critical]
    assert incident_rows(groups, _sha256("elsewhere"), DEFAULT_PAGER_ROUTE_KEYS) == []
    # A route that both records and pages: the recorder's own group key is the dedup key.
    assert incident_rows(groups, _sha256(recorded), ()) == sorted([critical, warning])
    # A value holding "}:{" adds readings, never a false match.
    odd = group_key(RECORDER_ROUTE, {"alertname": 'x}:{y="z"', "service": "web"})
    odd_key = _sha256(group_key(PAGER_ROUTE, {"alertname": 'x}:{y="z"', "service": "web"}))
    assert paged_by(odd, odd_key, DEFAULT_PAGER_ROUTE_KEYS) is not None


def test_route_keys_are_read_as_alertmanager_writes_them() -> None:
    matchers = route_matchers('{}/{env=~"prod|stag.*",team!="a\\"b"}/{sev!~"info"}')
    assert matchers is not None
    assert [(m.name, m.op, m.value) for m in matchers] == [
        ("env", "=~", "prod|stag.*"),
        ("team", "!=", 'a"b'),
        ("sev", "!~", "info"),
    ]
    accept = {"env": "staging", "team": "c", "sev": "critical"}
    assert all(m.matches(accept) for m in matchers)
    assert not all(m.matches({**accept, "env": "xprod"}) for m in matchers)  # anchored
    assert route_matchers("{}") == []
    # Names quoted (as newer Alertmanagers may print them) and Go escapes in values.
    assert [(m.name, m.value) for m in route_matchers('{"odd name"="\\x41\\u00e9"}') or []] == [
        ("odd name", "A\u00e9")
    ]
    for unreadable in ("{", "{}/", "{a=b}", '{a="b"', '{a="b"}x', '{a=~"("}', '{a="\\q"}'):
        assert route_matchers(unreadable) is None, unreadable


def test_the_fake_refuses_what_pagerduty_does_not_send() -> None:
    with pytest.raises(ValueError, match="not a v3 event type"):
        SENDER.event("incident.exploded", {"type": "incident"}, None)
    with pytest.raises(ValueError, match="incident_note"):
        SENDER.event("incident.annotated", {"type": "incident"}, None)
    d = SENDER.acknowledged(incident("k"), ALICE_PD)
    assert d.headers["User-Agent"] == USER_AGENT == "PagerDuty-Webhook/V3.0"
    assert d.headers["Content-Type"] == "application/json"
    assert {"X-Webhook-Id", "X-Webhook-Subscription", "X-PagerDuty-Signature"} <= set(d.headers)
    event = d.payload["event"]
    assert (event["event_type"], event["resource_type"]) == ("incident.acknowledged", "incident")
    assert event["agent"]["type"] == "user_reference"
    assert event["data"]["status"] == "acknowledged"
    assert event["occurred_at"].endswith("Z")


async def test_the_events_api_fake_records_the_dedup_key_and_its_incident(
    aiohttp_client: Any,
) -> None:
    key = "k" * 32
    client: TestClient = await aiohttp_client(make_sink({}, [key]))
    pager: PagerDuty = client.server.app[PAGER]
    trigger = {
        "routing_key": key,
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "x", "severity": "critical"},
    }
    made_up = await (await client.post("/v2/enqueue", json=trigger)).json()
    assert pager.events[0].dedup_key == made_up["dedup_key"]
    await client.post("/v2/enqueue", json={**trigger, "dedup_key": "abc"})
    await client.post("/v2/enqueue", json={**trigger, "dedup_key": "abc"})  # joins it
    assert [i.incident_key for i in pager.incidents] == [made_up["dedup_key"], "abc"]
    await client.post(
        "/v2/enqueue", json={"routing_key": key, "event_action": "resolve", "dedup_key": "abc"}
    )
    first = pager.incident("abc")
    assert first is not None
    assert first.status == "resolved"
    await client.post("/v2/enqueue", json={**trigger, "dedup_key": "abc"})  # a new incident
    again = pager.incident("abc")
    assert again is not None
    assert again.id != first.id
    assert again.status == "triggered"


def test_the_pagerduty_section_is_checked_with_the_rest_of_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match=r"pagerduty\.machine: 'pager' is not the name of a"):
        write_config(tmp_path, **pagerduty_config(tmp_path, machine="pager"))
    with pytest.raises(ConfigError, match=r"responders\.alice@example\.com"):
        write_config(tmp_path, **pagerduty_config(tmp_path, responders={"alice@example.com": "x"}))
    overrides = pagerduty_config(tmp_path)
    (tmp_path / "pagerduty_secret").write_text("short\n")
    with pytest.raises(
        ConfigError, match=r"pagerduty\.webhook_secret_file: the secret in .* at least"
    ):
        write_config(tmp_path, **overrides)
    _, _, path = write_config(tmp_path, **pagerduty_config(tmp_path))
    assert cli_main(["serve", "--config.file", str(path), "--check-config"]) == 0
    out = capsys.readouterr()
    assert "PagerDuty webhooks as pagerduty" in out.out + out.err
    assert PAGERDUTY_SECRET not in out.out + out.err


@pytest.fixture
async def offline_api(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    """PagerDuty webhooks configured, and a database that is not there."""
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": f"host=127.0.0.1 port={free_port()} dbname=x user=x"},
        **pagerduty_config(tmp_path),
    )
    client: TestClient = await aiohttp_client(make_app(cfg, secrets))
    return client


async def _post(api: TestClient, d: Delivery) -> tuple[int, dict[str, Any]]:
    resp = await api.post(URL, data=d.body, headers=d.headers)
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


async def test_refusals_and_ignored_events_never_reach_the_database(
    offline_api: TestClient,
) -> None:
    d = SENDER.acknowledged(incident("k"), ALICE_PD)
    unsigned = {k: v for k, v in d.headers.items() if k != "X-PagerDuty-Signature"}
    resp = await offline_api.post(URL, data=d.body, headers=unsigned)
    assert resp.status == 401
    assert (await resp.json())["error"] == "missing_signature"
    assert "WWW-Authenticate" not in resp.headers
    forged = WebhookSender(("not-the-subscription-secret",)).acknowledged(incident("k"), ALICE_PD)
    assert await _post(offline_api, forged) == (
        401,
        {
            "error": "invalid_signature",
            "reason": "no v1 signature in X-PagerDuty-Signature is the body's HMAC-SHA256 with "
            "the subscription's secret",
        },
    )
    note = {"id": "PNOTE01", "type": "incident_note", "content": "looking"}
    status, body = await _post(offline_api, SENDER.event("incident.annotated", note, None))
    assert (status, body["outcome"]) == (202, "ignored")
    # An event that needs the database: its absence is a 503, which PagerDuty retries.
    status, body = await _post(offline_api, d)
    assert (status, body["error"]) == (503, "machine_user_unprovisioned")
    metrics = await (await offline_api.get("/metrics")).text()
    assert 'api_pagerduty_webhooks_total{outcome="unauthorized"} 2.0' in metrics
    assert 'api_pagerduty_webhooks_total{outcome="ignored"} 1.0' in metrics
    assert 'api_pagerduty_webhooks_total{outcome="failed"} 1.0' in metrics
    assert 'api_requests_rejected_total{reason="missing_signature"} 1.0' in metrics
    assert 'api_requests_rejected_total{reason="invalid_signature"} 1.0' in metrics


async def test_without_a_pagerduty_section_the_webhook_is_404(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    cfg, secrets, _ = write_config(tmp_path)
    api: TestClient = await aiohttp_client(make_app(cfg, secrets))
    status, body = await _post(api, SENDER.acknowledged(incident("k"), ALICE_PD))
    assert (status, body["error"]) == (404, "not_found")


async def test_oversize_and_garbage_bodies_are_4xx_json(offline_api: TestClient) -> None:
    def signed(body: bytes, content_type: str = "application/json") -> Delivery:
        return Delivery(
            body,
            {"Content-Type": content_type, "X-PagerDuty-Signature": sign(body, SENDER.secrets)},
        )

    huge = b'{"event": "' + b"x" * (256 * 1024) + b'"}'
    cases = [
        (signed(huge), 413, "too_large"),
        (Delivery(huge, {"X-PagerDuty-Signature": "v1=00"}), 413, "too_large"),
        (signed(b"\x00\xff not json"), 400, "invalid_json"),
        (signed(b'{"event": NaN}'), 400, "invalid_json"),
        (signed(b"[]"), 422, "invalid_request"),
        (signed(b'{"event": {"id": "", "event_type": "x"}}'), 422, "invalid_request"),
        (
            signed(
                b'{"event": {"id": "E1", "event_type": "incident.acknowledged",'
                b' "data": {"type": "incident_note", "id": "N1"}}}'
            ),
            422,
            "invalid_request",
        ),
        (signed(b'{"event": {}}', "text/plain"), 415, "unsupported_media_type"),
    ]
    for delivery, status, code in cases:
        got, body = await _post(offline_api, delivery)
        assert (got, body["error"]) == (status, code), delivery.body[:80]
    metrics = await (await offline_api.get("/metrics")).text()
    assert 'api_pagerduty_webhooks_total{outcome="invalid"} 8.0' in metrics


# --- with a database: notifications stored as the recorder stores them ---------------------

# The service is unique to this run: the resolution test fires it in the session's Alertmanager.
LABELS = {"alertname": "UptimeTargetDown", "service": f"web-{uuid.uuid4().hex[:8]}"}


async def record_group(dsn: str, route: str, alerts: list[dict[str, str]]) -> str:
    """One Alertmanager notification of `route`'s group of LABELS, stored through the recorder's
    own store; the dedup key Alertmanager would have sent PagerDuty for the pager's group."""
    starts = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    payload = {
        "version": "4",
        "receiver": "recorder",
        "groupKey": group_key(route, LABELS),
        "truncatedAlerts": 0,
        "status": "firing",
        "groupLabels": LABELS,
        "commonLabels": LABELS,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {**LABELS, **extra},
                "annotations": {"summary": "web is down"},
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": uuid.uuid4().hex[:16],
            }
            for extra in alerts
        ],
    }
    store = PgStore(RecorderDatabase(conninfo=dsn))
    await store.open()
    try:
        await store.write_notification(parse_alertmanager(json.dumps(payload).encode()))
    finally:
        await store.close()
    return _sha256(group_key(PAGER_ROUTE, LABELS))


def _row(dsn: str, target: str) -> tuple[Any, ...]:
    (row,) = rows(
        dsn,
        "SELECT id, acknowledged_by, acknowledged_at, resolved_by, resolved_at, resolution_notes"
        " FROM infrastructure_alerts WHERE alert_rule->'labels'->>'target' = %s",
        target,
    )
    return row


def _audit(dsn: str) -> list[tuple[Any, ...]]:
    return rows(
        dsn,
        "SELECT action, actor_user_id, actor_kind, actor_machine, target_id, before, after"
        " FROM infrastructure_audit_log ORDER BY occurred_at",
    )


@pytest.fixture
async def paged(seeded: tuple[str, Any]) -> tuple[str, str]:
    """A database with Alice's account and one recorded group: a critical alert (target a,
    which paged) and a warning (target b, which did not); the incident's dedup key."""
    dsn, _ = seeded
    execute(dsn, "INSERT INTO auth.users (id, email) VALUES (%s, 'alice@example.com')", ALICE)
    key = await record_group(
        dsn,
        RECORDER_ROUTE,
        [{"severity": "critical", "target": "a"}, {"severity": "warning", "target": "b"}],
    )
    return dsn, key


@pytest.fixture
async def pd_api(
    paged: tuple[str, str], alertmanager: str, aiohttp_client: Any, tmp_path: Path
) -> TestClient:
    dsn, _ = paged
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn},
        alertmanager_url=alertmanager,
        **pagerduty_config(tmp_path, responders=RESPONDERS),
    )
    return await start_client(aiohttp_client, cfg, secrets)


@pytest.mark.integration
async def test_an_acknowledgement_acks_the_paged_alerts_as_the_responder_found_by_email(
    pd_api: TestClient, paged: tuple[str, str]
) -> None:
    dsn, key = paged
    d = SENDER.acknowledged(incident(key), ALICE_PD)
    status, body = await _post(pd_api, d)
    event_id = d.payload["event"]["id"]
    assert (status, body) == (
        202,
        {
            "event_id": event_id,
            "event_type": "incident.acknowledged",
            "outcome": "applied",
            "matched": 1,
        },
    )
    row_id, acked_by, acked_at, *_ = _row(dsn, "a")
    assert (acked_by, acked_at is not None) == (ALICE, True)
    assert _row(dsn, "b")[1:3] == (None, None)  # the warning never paged
    ((action, actor, kind, machine, target, before, after),) = _audit(dsn)
    assert (action, actor, kind, machine, target) == (
        "alert.acknowledge",
        PAGERDUTY_MACHINE,
        "machine",
        "pagerduty",
        str(row_id),
    )
    assert before["acknowledged_by"] is None
    assert after["acknowledged_by"] == str(ALICE)
    pd = after["pagerduty"]
    assert pd["responder"] == {"email": "Alice@Example.com", "user_id": str(ALICE)}
    assert (pd["agent"]["id"], pd["agent"]["summary"]) == ("PALICE1", "Alice Example")
    assert (pd["event_id"], pd["incident"]["incident_key"]) == (event_id, key)
    assert pd["webhook_id"] == d.headers["X-Webhook-Id"]
    assert rows(dsn, "SELECT event_type, matched FROM pagerduty_webhook_events") == [
        ("incident.acknowledged", 1)
    ]
    metrics = await (await pd_api.get("/metrics")).text()
    assert 'api_pagerduty_webhooks_total{outcome="applied"} 1.0' in metrics


@pytest.mark.integration
async def test_a_responder_without_an_account_here_is_recorded_as_the_machine_user(
    pd_api: TestClient, paged: tuple[str, str]
) -> None:
    dsn, key = paged
    for who in (User("PNOBODY", "Bob Unmapped"), GHOST_PD):
        status, body = await _post(pd_api, SENDER.acknowledged(incident(key), who))
        assert (status, body["outcome"], body["matched"]) == (202, "applied", 1)
        assert _row(dsn, "a")[1] == PAGERDUTY_MACHINE
    unmapped, ghost = (a[6]["pagerduty"] for a in _audit(dsn))
    assert unmapped["responder"] == {"email": None, "user_id": None}
    assert unmapped["agent"]["summary"] == "Bob Unmapped"
    # Mapped to an email, but no account has it: the machine user, the email kept for the record.
    assert ghost["responder"] == {"email": "ghost@example.com", "user_id": None}
    assert ghost["agent"]["id"] == GHOST_PD.id


@pytest.mark.integration
async def test_during_a_secret_rotation_one_valid_signature_is_enough(
    pd_api: TestClient, paged: tuple[str, str]
) -> None:
    _, key = paged
    rotating = WebhookSender(("the-old-secret-0123456789abcdef", PAGERDUTY_SECRET))
    d = rotating.acknowledged(incident(key), ALICE_PD)
    assert d.headers["X-PagerDuty-Signature"].count("v1=") == 2
    status, body = await _post(pd_api, d)
    assert (status, body["outcome"]) == (202, "applied")


@pytest.mark.integration
async def test_bad_or_missing_signatures_are_401_and_nothing_is_written(
    pd_api: TestClient, paged: tuple[str, str]
) -> None:
    dsn, key = paged
    good = SENDER.acknowledged(incident(key), ALICE_PD)
    tampered = good.body.replace(b"Alice Example", b"Mallory Evil!")
    attempts = [
        Delivery(good.body, {**good.headers, "X-PagerDuty-Signature": ""}),
        Delivery(tampered, good.headers),
        Delivery(good.body, {**good.headers, "X-PagerDuty-Signature": "v1=" + "0" * 64}),
        Delivery(
            good.body,
            {**good.headers, "X-PagerDuty-Signature": good.headers["X-PagerDuty-Signature"][1:]},
        ),
        WebhookSender(("a-different-secret-entirely",)).acknowledged(incident(key), ALICE_PD),
    ]
    for d in attempts:
        status, body = await _post(pd_api, d)
        assert status == 401, body
        assert body["error"] in ("missing_signature", "invalid_signature")
    assert _row(dsn, "a")[1:3] == (None, None)
    assert rows(dsn, "SELECT count(*) FROM pagerduty_webhook_events") == [(0,)]
    assert rows(dsn, "SELECT count(*) FROM infrastructure_audit_log") == [(0,)]
    metrics = await (await pd_api.get("/metrics")).text()
    assert 'api_pagerduty_webhooks_total{outcome="unauthorized"} 5.0' in metrics


@pytest.mark.integration
async def test_a_redelivered_event_is_written_once(
    pd_api: TestClient, paged: tuple[str, str]
) -> None:
    dsn, key = paged
    d = SENDER.acknowledged(incident(key), ALICE_PD)
    assert (await _post(pd_api, d))[1]["outcome"] == "applied"
    first = _row(dsn, "a")[2]
    assert await _post(pd_api, d) == (
        202,
        {
            "event_id": d.payload["event"]["id"],
            "event_type": "incident.acknowledged",
            "outcome": "duplicate",
            "matched": 0,
        },
    )
    assert _row(dsn, "a")[2] == first
    # Two deliveries of one event at once: the second waits for the first's claim, then finds it.
    again = SENDER.acknowledged(incident(key), ALICE_PD)
    outcomes = sorted(
        b["outcome"] for _, b in await asyncio.gather(_post(pd_api, again), _post(pd_api, again))
    )
    assert outcomes == ["applied", "duplicate"]
    assert len(_audit(dsn)) == 2
    metrics = await (await pd_api.get("/metrics")).text()
    assert 'api_pagerduty_webhooks_total{outcome="duplicate"} 2.0' in metrics


@pytest.mark.integration
async def test_a_resolution_in_pagerduty_of_a_rule_alert_still_firing_keeps_it_active(
    pd_api: TestClient, paged: tuple[str, str], alertmanager: str
) -> None:
    dsn, key = paged
    labels = {**LABELS, "severity": "critical", "target": "a"}
    am_post_alert(alertmanager, labels)
    status, body = await _post(pd_api, SENDER.resolved(incident(key), ALICE_PD))
    assert (status, body["outcome"], body["matched"]) == (202, "applied", 1)
    row_id, _, _, resolved_by, resolved_at, notes = _row(dsn, "a")
    assert (resolved_by, resolved_at) == (ALICE, None)
    assert notes == "resolved in PagerDuty by Alice@Example.com (incident #7)"
    ((action, *_, after),) = _audit(dsn)
    assert (action, after["resolved_at"]) == ("alert.resolve", None)
    # Once Alertmanager no longer has it firing, the next resolution (by PagerDuty itself,
    # no person) ends it, and the notes keep both.
    am_post_alert(alertmanager, labels, endsAt=datetime.now(UTC).isoformat())
    status, body = await _post(pd_api, SENDER.resolved(incident(key), None))
    assert (status, body["matched"]) == (202, 1)
    _, _, _, resolved_by, resolved_at, notes = _row(dsn, "a")
    assert (resolved_by, resolved_at is not None) == (PAGERDUTY_MACHINE, True)
    assert notes == (
        "resolved in PagerDuty by Alice@Example.com (incident #7)\n"
        "resolved in PagerDuty by PagerDuty (incident #7)"
    )
    assert str(row_id) in {a[4] for a in _audit(dsn)}


@pytest.mark.integration
async def test_a_reassignment_is_recorded_in_the_audit_log_only(
    pd_api: TestClient, paged: tuple[str, str]
) -> None:
    dsn, key = paged
    before = _row(dsn, "a")
    bob = User("PBOB001", "Bob Builder")
    status, body = await _post(pd_api, SENDER.reassigned(incident(key), ALICE_PD, to=bob))
    assert (status, body["outcome"]) == (202, "applied")
    assert _row(dsn, "a") == before
    ((action, actor, *_, after),) = _audit(dsn)
    assert (action, actor) == ("alert.reassign", PAGERDUTY_MACHINE)
    assert [(a["id"], a["summary"]) for a in after["pagerduty"]["assignees"]] == [
        ("PBOB001", "Bob Builder")
    ]


@pytest.mark.integration
async def test_an_incident_matching_no_active_alert_is_202_with_nothing_matched(
    pd_api: TestClient, paged: tuple[str, str]
) -> None:
    dsn, _ = paged
    for key in (_sha256("a group nobody recorded"), None):
        status, body = await _post(pd_api, SENDER.acknowledged(incident(key), ALICE_PD))
        assert (status, body["outcome"], body["matched"]) == (202, "unmatched", 0)
    assert rows(dsn, "SELECT matched FROM pagerduty_webhook_events") == [(0,), (0,)]
    assert rows(dsn, "SELECT count(*) FROM infrastructure_audit_log") == [(0,)]


@pytest.mark.integration
async def test_events_not_acted_on_are_202_ignored(
    pd_api: TestClient, paged: tuple[str, str]
) -> None:
    dsn, key = paged
    inc = incident(key)
    deliveries = [
        SENDER.incident_event("incident.triggered", inc, None),
        SENDER.incident_event("incident.escalated", inc, None),
        SENDER.event(
            "incident.annotated",
            {"id": "PN1", "type": "incident_note", "content": "on it", "trimmed": False},
            SENDER.user(ALICE_PD),
        ),
        SENDER.event("service.updated", {"id": "PSV1", "type": "service"}, None),
    ]
    # The test event a subscription sends when it is created (data type "ping").
    ping = json.dumps(
        {
            "event": {
                "id": "01PING",
                "event_type": "pagey.ping",
                "resource_type": "pagey",
                "occurred_at": "2026-11-29T10:00:00.000Z",
                "agent": None,
                "client": None,
                "data": {"message": "Hello from your friend Pagey!", "type": "ping"},
            }
        }
    ).encode()
    deliveries.append(
        Delivery(
            ping,
            {
                "Content-Type": "application/json",
                "X-PagerDuty-Signature": sign(ping, SENDER.secrets),
            },
        )
    )
    for d in deliveries:
        status, body = await _post(pd_api, d)
        assert (status, body["outcome"], body["matched"]) == (202, "ignored", 0)
    assert rows(dsn, "SELECT count(*) FROM pagerduty_webhook_events") == [(0,)]
    assert _row(dsn, "a")[1] is None


def _as(dsn: str, role: str, who: uuid.UUID | None, sql: str, *args: Any) -> Any:
    """Run `sql` as `who` (role `role`): its rows, or the name of the error it raised."""
    claims = json.dumps({"role": role} if who is None else {"sub": str(who), "role": role})
    with psycopg.connect(dsn) as conn:
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL ROLE {role}")
                conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
                cur = conn.execute(sql, args)  # type: ignore[arg-type]
                return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            return type(exc).__name__


@pytest.mark.integration
async def test_migration_0009_admits_exactly_the_roles_the_alerts_policy_admits(
    paged: tuple[str, str],
) -> None:
    dsn, _ = paged
    groups = "SELECT count(*) FROM public.wsinfra_active_alert_groups()"
    lookup = "SELECT public.wsinfra_user_id_by_email('ALICE@example.com')"
    claim = (
        "INSERT INTO pagerduty_webhook_events (event_id, event_type) VALUES (%s, 'x') "
        "ON CONFLICT (event_id) DO NOTHING"
    )
    for role in ("admin", "developer", "ops"):
        assert _as(dsn, "authenticated", USERS[role], groups) == [(2,)]
        assert _as(dsn, "authenticated", USERS[role], lookup) == [(ALICE,)]
        assert _as(dsn, "authenticated", USERS[role], claim, role) == []
    for who in (USERS["finance"], NO_PROFILE):
        assert _as(dsn, "authenticated", who, groups) == [(0,)]
        assert _as(dsn, "authenticated", who, lookup) == [(None,)]
        assert _as(dsn, "authenticated", who, claim, str(who)) == "InsufficientPrivilege"
    assert _as(dsn, "anon", None, groups) == "InsufficientPrivilege"
    assert _as(dsn, "anon", None, lookup) == "InsufficientPrivilege"
    # Two accounts with one email: nobody is named.
    execute(
        dsn, "INSERT INTO auth.users (id, email) VALUES (%s, 'alice@EXAMPLE.com')", uuid.uuid4()
    )
    assert _as(dsn, "authenticated", USERS["ops"], lookup) == [(None,)]


@pytest.fixture
def login_role(paged: tuple[str, str]) -> Iterator[str]:
    """A NOINHERIT login role with exactly the grants docs/operator-api.md lists (as
    tests/api/test_roles.py makes it)."""
    dsn, _ = paged
    role = f"wsinfra_api_{uuid.uuid4().hex[:8]}"
    execute(PG_ADMIN, f"CREATE ROLE {role} LOGIN NOINHERIT")
    try:
        execute(dsn, LOGIN_GRANTS.format(role=role))
        yield role
    finally:
        execute(dsn, 'DROP POLICY "wsinfra api sets up machine users" ON public.user_profiles')
        execute(dsn, f"DROP OWNED BY {role}")
        execute(PG_ADMIN, f"DROP ROLE {role}")


@pytest.mark.integration
async def test_the_login_role_needs_no_grant_beyond_the_documented_ones(
    paged: tuple[str, str], login_role: str, aiohttp_client: Any, tmp_path: Path
) -> None:
    dsn, key = paged
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn.replace("user=postgres", f"user={login_role}")},
        **pagerduty_config(tmp_path, responders=RESPONDERS),
    )
    api = await start_client(aiohttp_client, cfg, secrets)
    status, body = await _post(api, SENDER.acknowledged(incident(key), ALICE_PD))
    assert (status, body["outcome"], body["matched"]) == (202, "applied", 1)
    assert _row(dsn, "a")[1] == ALICE


# --- end to end: the committed Alertmanager config, the recorder, PagerDuty, the API --------

ROUTING_KEY = "r" * 32
RECORDER_TOKEN = "recorder-token-for-the-pagerduty-test"


async def _wait(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


@pytest.fixture
async def recorder_store(paged: tuple[str, str]) -> AsyncIterator[PgStore]:
    store = PgStore(RecorderDatabase(conninfo=paged[0]))
    await store.open()
    yield store
    await store.close()


@pytest.mark.integration
async def test_alertmanager_pages_and_a_pagerduty_acknowledgement_reaches_the_recorded_alert(
    paged: tuple[str, str],
    recorder_store: PgStore,
    aiohttp_client: Any,
    aiohttp_server: Any,
    tmp_path: Path,
) -> None:
    binary("prometheus-alertmanager", "alertmanager")
    dsn, _ = paged
    sink = await aiohttp_server(make_sink({"T0/B0/slacktoken": "#ops-alerts"}, [ROUTING_KEY]))
    pager: PagerDuty = sink.app[PAGER]
    recorder = await aiohttp_server(
        make_recorder(
            recorder_store, RecorderSecrets(RECORDER_TOKEN.encode()), max_body_bytes=1 << 20
        )
    )
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "recorder_token").write_text(RECORDER_TOKEN + "\n")
    (secrets / "slack_webhook_url").write_text(
        f"http://127.0.0.1:{sink.port}/services/T0/B0/slacktoken\n"
    )
    (secrets / "pagerduty_routing_key").write_text(ROUTING_KEY + "\n")
    am_cfg = write_placed(
        tmp_path / "am.yml",
        Placement(
            secrets_dir=secrets,
            recorder_url=f"http://127.0.0.1:{recorder.port}",
            pagerduty_url=f"http://127.0.0.1:{sink.port}/v2/enqueue",
        ),
    )
    assert yaml.safe_load(am_cfg.read_text())["route"]["group_by"] == ["alertname", "service"]
    port = free_port()
    am = spawn(alertmanager_argv(am_cfg, port, tmp_path / "am-data"), tmp_path / "am.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", proc=am)
        name = f"PagerE2E{uuid.uuid4().hex[:8]}"
        group = {"alertname": name, "service": "checkout"}
        async with httpx.AsyncClient(timeout=5) as http:
            resp = await http.post(
                f"http://127.0.0.1:{port}/api/v2/alerts",
                json=[
                    {
                        "labels": {**group, "severity": sev, "target": target},
                        "annotations": {"summary": name},
                    }
                    for sev, target in (("critical", "c1"), ("warning", "w1"))
                ],
            )
            assert resp.status_code == 200

        async def recorded() -> list[tuple[Any, ...]]:
            return rows(
                dsn,
                "SELECT DISTINCT group_key FROM alertmanager_notifications"
                " WHERE payload->'groupLabels'->>'alertname' = %s AND receiver = 'recorder'",
                name,
            )

        ((stored_key,),) = await _wait("the recorder's notification", recorded)

        async def both_rows() -> bool:
            # Alertmanager may flush the two alerts in two notifications (5 s apart): the
            # acknowledgement below must find both rows written.
            return rows(
                dsn, "SELECT count(*) FROM infrastructure_alerts WHERE alert_type = %s", name
            ) == [(2,)]

        await _wait("both alerts recorded", both_rows)
        # The recorder's group key is its route's: Route.Key() of the first child, with its
        # one matcher (everything but notices).
        assert stored_key == f'{{}}/{{kind!="notice"}}:{{alertname="{name}", service="checkout"}}'
        # What Alertmanager sent PagerDuty: sha256 of the pager route's group key.
        want = _sha256(f'{PAGER_ROUTE}:{{alertname="{name}", service="checkout"}}')

        async def paged_incident() -> Incident | None:
            return pager.incident(want)

        pd_incident = await _wait("the page with the derived dedup key", paged_incident)
        assert {e.dedup_key for e in pager.events if e.incident_id == pd_incident.id} == {want}

        cfg, api_secrets, _ = write_config(
            tmp_path,
            database={"conninfo": dsn},
            alertmanager_url=f"http://127.0.0.1:{port}",
            **pagerduty_config(tmp_path, responders=RESPONDERS),
        )
        api = await start_client(aiohttp_client, cfg, api_secrets)
        status, body = await _post(api, SENDER.acknowledged(pd_incident, ALICE_PD))
        assert (status, body["outcome"], body["matched"]) == (202, "applied", 1)
        acked = rows(
            dsn,
            "SELECT alert_rule->'labels'->>'target', acknowledged_by FROM infrastructure_alerts"
            " WHERE alert_type = %s ORDER BY 1",
            name,
        )
        assert acked == [("c1", ALICE), ("w1", None)]

        # The ops channel is told who took it in PagerDuty (once for the incident).
        async def told() -> list[str]:
            return [
                m.text()
                for m in sink.app[SLACK].messages
                if m.channel == "#ops-alerts" and "acknowledged via PagerDuty" in m.text()
            ]

        (text,) = await _wait("the acknowledgement notice in #ops-alerts", told)
        assert "Alice Example (PagerDuty user PALICE1) acknowledged: " in text, text
    finally:
        stop(am)
