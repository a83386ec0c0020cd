"""The recorder over HTTP against a real PostgreSQL: exact rows, idempotence, refusals, secrecy."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from recorder.app import make_app
from recorder.config import Database, Secrets
from recorder.store import PgStore
from tests.recorder.samples import (
    AUTH,
    GITHUB_SECRET,
    TOKEN,
    VERCEL_SECRET,
    am_alert,
    am_payload,
    github_deployment_status,
    github_signature,
    vercel_event,
    vercel_signature,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(migrated_dsn: str, secrets: Secrets, aiohttp_client) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    store = PgStore(Database.model_validate({"conninfo": migrated_dsn, "acquire_timeout": "2s"}))
    await store.open()
    app = make_app(store, secrets, max_body_bytes=64 * 1024, vercel_verify_code="verify-code-123")
    yield await aiohttp_client(app)
    await store.close()


def rows(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


async def metric(client: TestClient, line_start: str) -> float:
    text = await (await client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in /metrics")


async def test_alert_lifecycle_is_one_row(client: TestClient, migrated_dsn: str) -> None:
    firing = am_payload([am_alert(region="eu-west")])
    for _ in range(3):  # retries, an HA pair, repeat_interval: the same notification again
        resp = await client.post("/webhooks/alertmanager", data=firing, headers=AUTH)
        assert resp.status == 200
        assert await resp.json() == {"stored": 1, "dead_lettered": 0}
    resolved = am_payload(
        [am_alert(status="resolved", ends="2026-11-25T10:03:35Z", region="eu-west")],
        status="resolved",
    )
    assert (await client.post("/webhooks/alertmanager", data=resolved, headers=AUTH)).status == 200
    # A delayed retry of the firing notification must not un-resolve it.
    assert (await client.post("/webhooks/alertmanager", data=firing, headers=AUTH)).status == 200
    got = rows(
        migrated_dsn,
        "SELECT alert_type, severity, service_name, region, alert_title, current_metric_value, metric_threshold, "
        "triggered_at, resolved_at, alert_rule->'labels'->>'target', notification_sent FROM infrastructure_alerts",
    )
    assert len(got) == 1
    a = got[0]
    assert a[:7] == (
        "UptimeTargetDown",
        "critical",
        "web",
        "eu-west",
        "Uptime target is down from a quorum of probe regions.",
        1,
        0.5,
    )
    assert a[7].isoformat() == "2026-11-25T10:00:05.123456+00:00"
    assert a[8].isoformat() == "2026-11-25T10:03:35+00:00"
    # Only the record-only mirror carried it: nobody was notified.
    assert a[9:] == ("web", False)
    assert rows(
        migrated_dsn, "SELECT count(*), sum(alert_count) FROM alertmanager_notifications"
    ) == [(5, 5)]
    assert await metric(client, "recorder_alerts_written_total") == 5


@pytest.mark.parametrize("count", [1, 10], ids=["row by row", "bulk"])
async def test_notification_sent_only_when_a_person_was_notified(
    client: TestClient, migrated_dsn: str, count: int
) -> None:
    """The mirror's notifications leave notification_sent false; one from a receiver that also
    notifies a person sets it, and a later mirror notification (or its resolution) keeps it."""
    people = [am_alert(target=f"paged-{i}", fingerprint=f"{i:016x}") for i in range(count)]
    quiet = am_alert(target="quiet", fingerprint="f" * 16)

    async def post(alerts: list[dict[str, Any]], receiver: str, status: str = "firing") -> None:
        body = am_payload(alerts, status=status, receiver=receiver)
        resp = await client.post("/webhooks/alertmanager", data=body, headers=AUTH)
        assert resp.status == 200, await resp.text()

    def sent() -> dict[str, bool]:
        got = rows(
            migrated_dsn,
            "SELECT alert_rule->'labels'->>'target', notification_sent FROM infrastructure_alerts",
        )
        return {target: flag for target, flag in got}

    await post([*people, quiet], "recorder")
    assert set(sent().values()) == {False}
    await post(people, "critical")
    assert sent() == {**{a["labels"]["target"]: True for a in people}, "quiet": False}
    resolved = [
        {**a, "status": "resolved", "endsAt": "2026-11-25T10:03:35Z"} for a in [*people, quiet]
    ]
    await post(resolved, "recorder", status="resolved")
    assert sent() == {**{a["labels"]["target"]: True for a in people}, "quiet": False}


async def test_the_same_alert_firing_again_later_is_a_new_instance(
    client: TestClient, migrated_dsn: str
) -> None:
    await client.post("/webhooks/alertmanager", data=am_payload([am_alert()]), headers=AUTH)
    await client.post(
        "/webhooks/alertmanager",
        data=am_payload([am_alert(starts="2026-11-25T11:00:00Z")]),
        headers=AUTH,
    )
    assert rows(migrated_dsn, "SELECT count(*) FROM infrastructure_alerts") == [(2,)]


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (am_payload([am_alert()]), {}, 401, "unauthorized"),
        (am_payload([am_alert()]), {"Authorization": "Bearer wrong"}, 401, "unauthorized"),
        (b"{oops", AUTH, 400, "invalid_json"),
        (
            am_payload([am_alert()]).replace(b'"version": "4"', b'"version": "3"'),
            AUTH,
            422,
            "unsupported_version",
        ),
        (b"x" * (64 * 1024 + 1), AUTH, 413, "too_large"),
    ],
)
async def test_bad_alertmanager_input_is_refused_and_nothing_written(
    client: TestClient,
    migrated_dsn: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    reason: str,
) -> None:
    resp = await client.post("/webhooks/alertmanager", data=body, headers=headers)
    assert resp.status == status
    if status != 413:
        assert (await resp.json())["error"] == reason
    assert (
        await metric(
            client, f'recorder_webhook_errors_total{{reason="{reason}",source="alertmanager"}}'
        )
        == 1
    )
    assert rows(migrated_dsn, "SELECT count(*) FROM infrastructure_alerts") == [(0,)]
    assert rows(migrated_dsn, "SELECT count(*) FROM alertmanager_notifications") == [(0,)]


def _vercel(body: bytes) -> dict[str, str]:
    return {
        "x-vercel-signature": vercel_signature(VERCEL_SECRET, body),
        "Content-Type": "application/json",
    }


async def test_vercel_deployment_lifecycle_replays_and_metrics(
    client: TestClient, migrated_dsn: str
) -> None:
    created = vercel_event("deployment.created", delivery="d1", created_ms=1_764_064_800_000)
    succeeded = vercel_event("deployment.succeeded", delivery="d2", created_ms=1_764_064_900_000)
    for body in (created, succeeded, succeeded):  # the last one is a replay
        resp = await client.post("/webhooks/deployments/vercel", data=body, headers=_vercel(body))
        assert resp.status == 200
        assert resp.headers["x-vercel-verify"] == "verify-code-123"
    assert (await resp.json())["status"] == "duplicate delivery ignored"
    got = rows(
        migrated_dsn,
        "SELECT deployment_id, environment, git_branch, git_commit_hash, deployment_status, build_duration_ms, deployment_url FROM deployment_history",
    )
    assert got == [
        (
            "vercel:dpl_2euZBFqxYdDMDG1jTrHFnNZ2eUVa",
            "production",
            "main",
            "de8b89f1a2b3c4d5e6f708192a3b4c5d6e7f8091",
            "success",
            100_000,
            "https://web-9jaeg38me-acme.vercel.app",
        )
    ]
    assert await metric(client, 'recorder_webhook_replays_total{source="vercel"}') == 1
    assert (
        await metric(client, 'recorder_last_deployment_timestamp_seconds{environment="production"}')
        == 1_764_064_900
    )
    assert (
        await metric(
            client,
            'recorder_production_deployment_info{branch="main",commit="de8b89f1a2b3c4d5e6f708192a3b4c5d6e7f8091"}',
        )
        == 1
    )


async def test_out_of_order_events_never_move_a_deployment_backwards(
    client: TestClient, migrated_dsn: str
) -> None:
    failed = vercel_event("deployment.error", delivery="e1", created_ms=1_764_064_900_000)
    late_created = vercel_event("deployment.created", delivery="e0", created_ms=1_764_064_800_000)
    for body in (failed, late_created):
        assert (
            await client.post("/webhooks/deployments/vercel", data=body, headers=_vercel(body))
        ).status == 200
    assert rows(
        migrated_dsn,
        "SELECT deployment_status, error_message, build_duration_ms FROM deployment_history",
    ) == [("failed", "build or deployment failed", 100_000)]


async def test_vercel_bad_signature_is_403_like_vercel_and_writes_nothing(
    client: TestClient, migrated_dsn: str
) -> None:
    body = vercel_event("deployment.created")
    for headers in (
        {},
        {"x-vercel-signature": "0" * 40},
        {"x-vercel-signature": vercel_signature(b"other", body)},
    ):
        resp = await client.post("/webhooks/deployments/vercel", data=body, headers=headers)
        assert resp.status == 403
        assert await resp.json() == {"code": "invalid_signature", "error": "signature didn't match"}
    assert rows(migrated_dsn, "SELECT count(*) FROM deployment_history") == [(0,)]
    verify = await client.get("/webhooks/deployments/vercel")
    assert verify.headers["x-vercel-verify"] == "verify-code-123"


async def test_github_deployment_status_flow(client: TestClient, migrated_dsn: str) -> None:
    def headers(body: bytes, delivery: str, event: str = "deployment_status") -> dict[str, str]:
        return {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": github_signature(GITHUB_SECRET, body),
            "Content-Type": "application/json",
        }

    pending = github_deployment_status("in_progress", updated="2019-05-15T15:20:54Z")
    success = github_deployment_status("success", updated="2019-05-15T15:21:03Z")
    assert (
        await client.post(
            "/webhooks/deployments/github", data=pending, headers=headers(pending, "g1")
        )
    ).status == 200
    assert (
        await client.post(
            "/webhooks/deployments/github", data=success, headers=headers(success, "g2")
        )
    ).status == 200
    assert rows(
        migrated_dsn,
        "SELECT deployment_id, deployment_status, git_branch, build_duration_ms FROM deployment_history",
    ) == [("github:Codertocat/Hello-World:145988746", "success", "master", 10_000)]
    bad = await client.post(
        "/webhooks/deployments/github",
        data=success,
        headers={**headers(success, "g3"), "X-Hub-Signature-256": "sha256=" + "0" * 64},
    )
    assert bad.status == 403
    missing = await client.post(
        "/webhooks/deployments/github",
        data=success,
        headers={"X-GitHub-Event": "deployment_status"},
    )
    assert missing.status == 401
    ping = b'{"zen": "Design for failure."}'
    assert (
        await client.post(
            "/webhooks/deployments/github", data=ping, headers=headers(ping, "g4", "ping")
        )
    ).status == 200


async def test_no_secret_in_logs_metrics_or_error_bodies(
    client: TestClient, secrets: Secrets, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = []
    for headers in ({"Authorization": "Bearer nope"}, AUTH):
        resp = await client.post("/webhooks/alertmanager", data=b"{bad", headers=headers)
        bodies.append(await resp.text())
    body = vercel_event("deployment.created")
    bodies.append(
        await (
            await client.post(
                "/webhooks/deployments/vercel", data=body, headers={"x-vercel-signature": "x"}
            )
        ).text()
    )
    bodies.append(await (await client.get("/metrics")).text())
    everything = "\n".join(bodies) + "\n".join(
        r.getMessage() + str(r.__dict__) for r in caplog.records
    )
    for secret in (TOKEN, VERCEL_SECRET.decode(), GITHUB_SECRET.decode()):
        assert secret not in everything
    assert repr(secrets) == "Secrets(<redacted>)"


async def test_ready_and_metrics_report_the_database(client: TestClient) -> None:
    assert (await client.get("/-/ready")).status == 200
    assert await metric(client, "recorder_up") == 1
    assert await metric(client, "recorder_pool_size") >= 1


async def test_database_down_answers_503_so_alertmanager_retries(
    secrets: Secrets,
    aiohttp_client,
    unused_tcp_port: int,  # type: ignore[no-untyped-def]
) -> None:
    store = PgStore(
        Database.model_validate(
            {
                "conninfo": f"host=127.0.0.1 port={unused_tcp_port} user=postgres dbname=x connect_timeout=1",
                "acquire_timeout": "1s",
            }
        )
    )
    await store.open()
    try:
        client = await aiohttp_client(make_app(store, secrets, max_body_bytes=64 * 1024))
        resp = await client.post(
            "/webhooks/alertmanager", data=am_payload([am_alert()]), headers=AUTH
        )
        assert resp.status == 503
        assert (await resp.json())["error"] == "db_unavailable"
        body = vercel_event("deployment.created")
        assert (
            await client.post("/webhooks/deployments/vercel", data=body, headers=_vercel(body))
        ).status == 503
        assert (await client.get("/-/ready")).status == 503
        assert (
            await metric(
                client,
                'recorder_webhook_errors_total{reason="db_unavailable",source="alertmanager"}',
            )
            == 1
        )
        assert await metric(client, "recorder_up") == 0
    finally:
        await store.close()


def _vercel_for(commit: str, kind: str, dep_id: str, delivery: str, at_ms: int) -> bytes:
    doc = json.loads(vercel_event(kind, dep_id, delivery=delivery, created_ms=at_ms))
    doc["payload"]["deployment"]["meta"]["githubCommitSha"] = commit
    return json.dumps(doc).encode()


async def test_the_live_production_deployment_follows_promotions_and_rollbacks(
    client: TestClient,
) -> None:
    async def send(commit: str, kind: str, dep: str, at_ms: int) -> None:
        body = _vercel_for(commit, kind, dep, f"{dep}-{kind}-{at_ms}", at_ms)
        resp = await client.post("/webhooks/deployments/vercel", data=body, headers=_vercel(body))
        assert resp.status == 200, await resp.text()

    async def live() -> str:
        text = await (await client.get("/metrics")).text()
        (line,) = [
            x for x in text.splitlines() if x.startswith("recorder_production_deployment_info{")
        ]
        return line.split('commit="')[1].split('"')[0]

    t = 1_780_000_000_000
    await send("a" * 40, "deployment.succeeded", "dpl_A", t)
    await send("b" * 40, "deployment.succeeded", "dpl_B", t + 60_000)
    assert await live() == "b" * 40
    # Promote the older deployment (Vercel's promote, or an Instant Rollback to it).
    await send("a" * 40, "deployment.promoted", "dpl_A", t + 120_000)
    assert await live() == "a" * 40
    # A late replay of B's success does not make B live again.
    await send("b" * 40, "deployment.succeeded", "dpl_B", t + 60_000 + 1)
    assert await live() == "a" * 40
    # C goes live, then is rolled back: the one before it serves again.
    await send("c" * 40, "deployment.succeeded", "dpl_C", t + 180_000)
    assert await live() == "c" * 40
    await send("c" * 40, "deployment.rollback", "dpl_C", t + 240_000)
    assert await live() == "a" * 40
