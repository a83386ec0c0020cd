"""Nothing accepted is lost: a bad alert never blocks its batch, webhooks wait in the journal while
the database is away and are applied once, in order, and concurrent writers never deadlock."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from recorder.app import make_app
from recorder.config import Database, Secrets
from recorder.journal import Journal
from recorder.store import PgStore
from tests.recorder.samples import AUTH, am_alert, am_payload, vercel_event, vercel_signature
from tests.recorder.samples import VERCEL_SECRET as VSECRET

pytestmark = pytest.mark.integration


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.encode()).fetchall()


async def metric(client: TestClient, line_start: str) -> float:
    text = await (await client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not exported")


async def until(check: Any, what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def store_for(dsn: str) -> PgStore:
    return PgStore(Database.model_validate({"conninfo": dsn, "acquire_timeout": "1s"}))


def down_dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=postgres dbname=x connect_timeout=1"


@pytest.fixture
async def client(
    migrated_dsn: str, secrets: Secrets, aiohttp_client: Any, tmp_path: Path
) -> AsyncIterator[TestClient]:
    store = store_for(migrated_dsn)
    await store.open()
    journal = Journal(tmp_path / "journal", 1 << 20)
    journal.open()
    yield await aiohttp_client(make_app(store, secrets, max_body_bytes=1 << 20, journal=journal))
    await store.close()


async def test_one_bad_alert_never_blocks_its_batch(client: TestClient, migrated_dsn: str) -> None:
    good = am_alert()
    doc = json.loads(
        am_payload(
            [
                good,
                {**good, "fingerprint": "f" * 300},  # would overflow alert_id
                {**good, "fingerprint": "b2", "annotations": {"summary": "nul \x00 here"}},
                {**good, "fingerprint": "b3", "startsAt": "0001-01-01T00:00:00+05:00"},
                {**good, "fingerprint": "c4"},
            ]
        )
    )
    resp = await client.post("/webhooks/alertmanager", data=json.dumps(doc), headers=AUTH)
    assert resp.status == 200
    assert await resp.json() == {"stored": 2, "dead_lettered": 3}
    assert sorted(
        r[0].split(":")[0] for r in rows(migrated_dsn, "SELECT alert_id FROM infrastructure_alerts")
    ) == [
        good["fingerprint"],
        "c4",
    ]
    dead = rows(
        migrated_dsn, "SELECT alert_index, reason, detail, alert FROM alert_dead_letters ORDER BY 1"
    )
    assert [(i, r) for i, r, _, _ in dead] == [(1, "invalid_payload")] * 1 + [
        (2, "invalid_payload"),
        (3, "invalid_payload"),
    ]
    assert "NUL" in dead[1][2]
    assert dead[1][3]["annotations"]["summary"] == "nul \ufffd here"
    assert rows(migrated_dsn, "SELECT alert_count FROM alertmanager_notifications") == [(2,)]
    assert (
        await metric(client, 'recorder_alerts_dead_lettered_total{reason="invalid_payload"}') == 3
    )


async def test_a_database_outage_journals_and_a_restart_applies_once_in_order(
    migrated_dsn: str, secrets: Secrets, aiohttp_client: Any, tmp_path: Path, unused_tcp_port: int
) -> None:
    jdir = tmp_path / "journal"
    # 1. The database is unreachable: every valid webhook is journaled and answered 200.
    down = store_for(down_dsn(unused_tcp_port))
    await down.open()
    journal = Journal(jdir, 1 << 20)
    journal.open()
    c = await aiohttp_client(make_app(down, secrets, max_body_bytes=1 << 20, journal=journal))
    fp = "0123456789abcdef"
    firing = am_payload([am_alert(fingerprint=fp)])
    resolved = am_payload(
        [am_alert(fingerprint=fp, status="resolved", ends="2026-11-25T10:05:00Z")],
        status="resolved",
    )
    body = vercel_event("deployment.succeeded")
    for data, path, headers in (
        (firing, "/webhooks/alertmanager", AUTH),
        (resolved, "/webhooks/alertmanager", AUTH),
        (firing, "/webhooks/alertmanager", AUTH),  # a late retry of the firing one
        (
            body,
            "/webhooks/deployments/vercel",
            {
                "x-vercel-signature": vercel_signature(VSECRET, body),
                "Content-Type": "application/json",
            },
        ),
    ):
        resp = await c.post(path, data=data, headers=headers)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["status"] == "journaled"
    assert await metric(c, "recorder_journal_records") == 4
    assert await metric(c, 'recorder_journal_appended_total{source="alertmanager"}') == 3
    await c.close()
    await down.close()

    # 2. Record 1 reached the database before a crash, but was not forgotten locally.
    up = store_for(migrated_dsn)
    await up.open()
    reopened = Journal(jdir, 1 << 20)
    reopened.open()
    assert reopened.pending == 4
    first = reopened.read(reopened.entries[0])
    from recorder.payloads import parse_alertmanager

    assert await up.apply_journaled(
        reopened.id, first.seq, up.notification_writer(parse_alertmanager(first.body))
    )

    # 3. Restarted with the database back: the rest is applied, record 1 is not applied again.
    c2 = await aiohttp_client(make_app(up, secrets, max_body_bytes=1 << 20, journal=reopened))

    async def drained() -> bool:
        return await metric(c2, "recorder_journal_records") == 0

    await until(drained, "the journal to drain")
    assert await metric(c2, "recorder_journal_replayed_total") == 1
    assert await metric(c2, "recorder_journal_applied_total") == 3
    (alert,) = rows(migrated_dsn, "SELECT triggered_at, resolved_at FROM infrastructure_alerts")
    assert alert[1] is not None, "the late firing retry did not un-resolve the alert"
    assert rows(migrated_dsn, "SELECT count(*) FROM alertmanager_notifications") == [(3,)]
    assert rows(migrated_dsn, "SELECT deployment_status FROM deployment_history") == [("success",)]

    # 4. With the journal empty, webhooks are written directly again.
    resp = await c2.post(
        "/webhooks/alertmanager", data=am_payload([am_alert(fingerprint="feed")]), headers=AUTH
    )
    assert await resp.json() == {"stored": 1, "dead_lettered": 0}
    await up.close()


async def test_a_full_journal_answers_503_and_says_so(
    secrets: Secrets, aiohttp_client: Any, tmp_path: Path, unused_tcp_port: int
) -> None:
    down = store_for(down_dsn(unused_tcp_port))
    await down.open()
    journal = Journal(tmp_path / "j", max_bytes=1024 * 1024)
    journal.open()
    c = await aiohttp_client(make_app(down, secrets, max_body_bytes=1 << 20, journal=journal))
    big = am_payload([am_alert(fingerprint=f"{i:016x}") for i in range(800)])
    statuses = []
    for _ in range(4):
        resp = await c.post("/webhooks/alertmanager", data=big, headers=AUTH)
        statuses.append(resp.status)
    assert statuses[0] == 200
    assert statuses[-1] == 503
    assert (await resp.json())["error"] == "journal_full"
    assert (
        await metric(
            c, 'recorder_webhook_errors_total{reason="journal_full",source="alertmanager"}'
        )
        >= 1
    )
    assert await metric(c, "recorder_journal_capacity_bytes") == 1024 * 1024
    await down.close()


async def test_same_alerts_in_different_orders_never_deadlock(
    client: TestClient, migrated_dsn: str
) -> None:
    alerts = [am_alert(fingerprint=f"{i:016x}", target=f"t{i}") for i in range(60)]
    bodies = []
    for seed in range(12):
        shuffled = alerts[:]
        random.Random(seed).shuffle(shuffled)
        bodies.append(am_payload(shuffled))
    responses = await asyncio.gather(
        *(client.post("/webhooks/alertmanager", data=b, headers=AUTH) for b in bodies)
    )
    assert [r.status for r in responses] == [200] * 12
    for r in responses:
        assert (await r.json())["stored"] == 60  # written, not journaled: the database was up
    assert rows(migrated_dsn, "SELECT count(*) FROM infrastructure_alerts") == [(60,)]


@pytest.mark.slow
async def test_the_deploy_summary_loads_when_the_database_comes_up_after_the_recorder(
    secrets: Secrets, aiohttp_client: Any, tmp_path: Path
) -> None:
    from schema import migrate
    from tests.pg_cluster import throwaway_cluster

    with throwaway_cluster() as cluster:
        async with await psycopg.AsyncConnection.connect(cluster.dsn(), autocommit=True) as conn:
            await conn.execute("CREATE DATABASE wsinfra")
        dsn = cluster.dsn("wsinfra")
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            await migrate.apply(conn)
        store = store_for(dsn + " connect_timeout=1")
        await store.open()
        sent = vercel_event("deployment.succeeded")
        await store.write_deployment("vercel", "d-1", "deployment.succeeded", _parse_vercel(sent))
        await store.close()
        cluster.stop()

        store = store_for(dsn + " connect_timeout=1")
        await store.open()
        journal = Journal(tmp_path / "j", 1 << 20)
        journal.open()
        c = await aiohttp_client(make_app(store, secrets, max_body_bytes=1 << 20, journal=journal))
        text = await (await c.get("/metrics")).text()
        assert "recorder_production_deployment_info{" not in text
        cluster.start()

        async def loaded() -> bool:
            text = await (await c.get("/metrics")).text()
            return "recorder_production_deployment_info{" in text

        await until(loaded, "the deploy summary once the database is up", timeout=40)
        await store.close()


def _parse_vercel(body: bytes) -> Any:
    from recorder.payloads import parse_vercel

    return parse_vercel(body)[2]
