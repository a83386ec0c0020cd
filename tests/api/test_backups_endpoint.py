"""POST and GET /api/infrastructure/backups on a real PostgreSQL: an admin's request becomes one
unclaimed backup_status row (the worker's to claim) with its audit row, a second one for the
same target is refused while the first waits, every other role is refused by row-level
security, bad input is refused with a reason; the list shows wsinfra's own rows and the Supabase
mirror's newest first, and its summary's figures are computed by hand from the rows below."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient
from psycopg.types.json import Jsonb

from schema import backups as record
from tests.api.conftest import USERS, as_user, execute, rows, start_client, write_config
from tests.api.test_roles import login_role  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
URL = "/api/infrastructure/backups"
NOW = datetime.now(UTC)


def restart_clock() -> None:
    """Rows are dated relative to now at the start of each test, not to the module's import: in
    the whole suite a test may run many minutes after collection, and a backup "30 s old" must
    still be 30 s old when the data-loss risk is judged."""
    global NOW
    NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _fresh_clock() -> None:
    restart_clock()


def backups_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "targets": [{"name": "wsinfra"}, {"name": "other", "location": "/mnt/dumps/other/"}],
        "location": str(tmp_path / "backups"),
        "restore_targets": ["drill-restore"],
        "retention_policy": {"database_retention_days": 14, "files_retention_days": 7},
    }


@pytest.fixture
async def api(seeded: Any, aiohttp_client: Any, tmp_path: Path) -> TestClient:
    dsn, _ = seeded
    cfg, secrets, _ = write_config(
        tmp_path, database={"conninfo": dsn}, backups=backups_config(tmp_path)
    )
    return await start_client(aiohttp_client, cfg, secrets)


def own_backup(
    dsn: str,
    target: str,
    status: str,
    started: timedelta,
    *,
    took: float | None = None,
    size: int | None = None,
    removed: bool = False,
    retention: int = 30,
    manifest: dict[str, Any] | None = None,
    method: str = "pg_dump",
) -> uuid.UUID:
    """A row of the worker's (a dump by default) as it leaves it, started `started` ago."""
    at = NOW - started
    done = at + timedelta(seconds=took or 60) if status == "completed" else None
    out = rows(
        dsn,
        "INSERT INTO backup_status (backup_type, backup_target, backup_method, backup_location,"
        " backup_retention_days, backup_status, started_at, completed_at, claimed_at,"
        " backup_size_bytes, duration_seconds, removed_at, error_message, manifest)"
        " VALUES ('database', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id",
        target,
        method,
        f"/dumps/{target}/{at:%Y%m%dT%H%M%S}",
        retention,
        status,
        at,
        done,
        at,
        size,
        took,
        NOW if removed else None,
        "pg_dump: connection refused" if status == "failed" else None,
        None if manifest is None else Jsonb(manifest),
    )
    return uuid.UUID(str(out[0][0]))


async def mirror(dsn: str, *backups: record.SupabaseBackup) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await record.upsert_supabase_backups(conn, backups)
        await conn.commit()


def drill(
    dsn: str,
    target: str,
    drill_type: str,
    status: str,
    requested: timedelta,
    *,
    rto: float | None = None,
    restored: int | None = None,
    checks: list[dict[str, Any]] | None = None,
    backup_id: uuid.UUID | None = None,
) -> uuid.UUID:
    at = NOW - requested
    finished = at + timedelta(seconds=rto or 30) if status in ("passed", "failed") else None
    out = rows(
        dsn,
        "INSERT INTO restore_drills (drill_type, backup_target, status, trigger, requested_at,"
        " started_at, verified_at, finished_at, rto_seconds, rpo_seconds, restored_bytes, checks,"
        " error_message, backup_id)"
        " VALUES (%s, %s, %s, 'schedule', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        drill_type,
        target,
        status,
        at,
        at,
        finished if status == "passed" else None,
        finished,
        rto,
        3600.0 if status == "passed" else None,
        restored,
        Jsonb(checks or []),
        "row counts differ" if status == "failed" else None,
        backup_id,
    )
    return uuid.UUID(str(out[0][0]))


# --- POST ----------------------------------------------------------------------------------


async def test_an_admin_s_request_is_an_unclaimed_row_for_the_worker(
    api: TestClient, seeded: Any, tmp_path: Path
) -> None:
    dsn, _ = seeded
    resp = await api.post(
        URL,
        json={"backup_type": "database", "backup_notes": "before the migration"},
        headers={**as_user("admin"), "X-Request-Id": "req-backup-1"},
    )
    assert resp.status == 202
    doc = await resp.json()
    location = f"{tmp_path / 'backups'}/wsinfra/"
    assert doc == {
        "backup_id": doc["backup_id"],
        # No completed dump of the target yet: backups.estimates.backup (10 minutes).
        "estimated_duration_minutes": 10,
        "backup_location": location,
        "backup_target": "wsinfra",
        "backup_status": "in_progress",
        "retention_days": 14,  # the configured retention policy's database days
        "requested_at": doc["requested_at"],
        "estimated_from_backup_id": None,
    }
    assert rows(
        dsn,
        "SELECT backup_type, backup_target, backup_method, backup_location, backup_status,"
        " claimed_at, requested_by, backup_retention_days, backup_notes FROM backup_status"
        " WHERE id = %s",
        uuid.UUID(doc["backup_id"]),
    ) == [
        (
            "database",
            "wsinfra",
            "pg_dump",
            location,
            "in_progress",
            None,
            USERS["admin"],
            14,
            "before the migration",
        )
    ]
    audit = rows(
        dsn,
        "SELECT action, actor_user_id, target_table, target_id, request_id, after"
        " FROM infrastructure_audit_log",
    )
    assert [a[:5] for a in audit] == [
        ("backup.request", USERS["admin"], "backup_status", doc["backup_id"], "req-backup-1")
    ]
    assert audit[0][5]["backup_notes"] == "before the migration"
    # What the worker's claim sees: this request, for this target.
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        job = await record.claim_backup_request(conn, ["wsinfra"])
    assert job is not None
    assert (job.id, job.retention_days, job.requested_by) == (
        uuid.UUID(doc["backup_id"]),
        14,
        USERS["admin"],
    )


async def test_a_second_request_waits_for_the_first(api: TestClient, seeded: Any) -> None:
    dsn, _ = seeded
    admin = as_user("admin")
    first = await api.post(URL, json={"backup_type": "database"}, headers=admin)
    assert first.status == 202
    backup_id = (await first.json())["backup_id"]
    again = await api.post(URL, json={"backup_type": "database"}, headers=admin)
    assert again.status == 409
    doc = await again.json()
    assert doc["error"] == "backup_conflict"
    assert backup_id in doc["reason"]
    assert "not yet claimed" in doc["reason"]
    # Another target is not held up.
    other = await api.post(
        URL, json={"backup_type": "database", "backup_target": "other"}, headers=admin
    )
    assert other.status == 202
    assert (await other.json())["backup_location"] == "/mnt/dumps/other/"
    # Claimed and running: still one at a time.
    execute(dsn, "UPDATE backup_status SET claimed_at = now() WHERE id = %s", backup_id)
    running = await api.post(URL, json={"backup_type": "database"}, headers=admin)
    assert running.status == 409
    assert "running" in (await running.json())["reason"]
    # Finished: the next one may go, and is estimated from it.
    execute(
        dsn,
        "UPDATE backup_status SET backup_status = 'completed', completed_at = now(),"
        " duration_seconds = 125, backup_size_bytes = 2500000 WHERE id = %s",
        backup_id,
    )
    after = await api.post(
        URL, json={"backup_type": "database", "retention_days": 7}, headers=admin
    )
    assert after.status == 202
    doc = await after.json()
    assert doc["estimated_duration_minutes"] == 3  # 125 s, rounded up
    assert doc["backup_size_estimate_mb"] == 2.5
    assert doc["estimated_from_backup_id"] == backup_id
    assert doc["retention_days"] == 7
    assert rows(dsn, "SELECT count(*) FROM backup_status WHERE backup_status = 'in_progress'") == [
        (2,)
    ]


@pytest.mark.parametrize("role", ["developer", "ops", "finance"])
async def test_only_admins_may_ask_or_list(api: TestClient, seeded: Any, role: str) -> None:
    dsn, _ = seeded
    own_backup(dsn, "wsinfra", "completed", timedelta(hours=1), size=10)
    resp = await api.post(URL, json={"backup_type": "database"}, headers=as_user(role))
    assert resp.status == 403
    assert (await resp.json())["error"] == "forbidden"
    # Refused before any target is looked at: an unknown one is a 403 too, not a list of names.
    resp = await api.post(
        URL, json={"backup_type": "database", "backup_target": "nope"}, headers=as_user(role)
    )
    assert resp.status == 403
    resp = await api.get(URL, headers=as_user(role))
    assert resp.status == 403
    assert rows(dsn, "SELECT count(*) FROM backup_status") == [(1,)]
    assert rows(dsn, "SELECT count(*) FROM infrastructure_audit_log") == [(0,)]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"backup_type": "files"}, "wsinfra backs up databases only"),
        ({"backup_type": "configuration"}, "wsinfra backs up databases only"),
        (
            {"backup_type": "database", "backup_target": "nope"},
            "configured targets: wsinfra, other",
        ),
        ({"backup_type": "database", "backup_target": "supabase:abc"}, "backed up by Supabase"),
        ({"backup_type": "database", "retention_days": 0}, "retention_days"),
        ({"backup_type": "database", "retention_days": 3651}, "retention_days"),
        ({"backup_type": "database", "retention_days": "7"}, "retention_days"),
        ({"backup_type": "database", "backup_notes": "x" * 1001}, "backup_notes"),
        ({"backup_type": "database", "backup_target": "a b"}, "backup_target"),
        ({"backup_type": "database", "extra": 1}, "extra: unknown field"),
        ({"backup_type": "tape"}, "backup_type"),
        ({}, "backup_type"),
    ],
)
async def test_bad_requests_are_refused_with_a_reason(
    api: TestClient, seeded: Any, body: dict[str, Any], reason: str
) -> None:
    dsn, _ = seeded
    resp = await api.post(URL, json=body, headers=as_user("admin"))
    assert resp.status == 422
    doc = await resp.json()
    assert doc["error"] == "invalid_request"
    assert reason in doc["reason"]
    assert rows(dsn, "SELECT count(*) FROM backup_status") == [(0,)]


async def test_notes_of_a_thousand_characters_are_kept(api: TestClient, seeded: Any) -> None:
    dsn, _ = seeded
    resp = await api.post(
        URL, json={"backup_type": "database", "backup_notes": "n" * 1000}, headers=as_user("admin")
    )
    assert resp.status == 202
    assert rows(dsn, "SELECT length(backup_notes) FROM backup_status") == [(1000,)]


async def test_without_targets_a_request_is_refused(
    seeded: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    dsn, _ = seeded
    cfg, secrets, _ = write_config(tmp_path, database={"conninfo": dsn})
    api = await start_client(aiohttp_client, cfg, secrets)
    resp = await api.post(URL, json={"backup_type": "database"}, headers=as_user("admin"))
    assert resp.status == 422
    assert "no backup targets configured" in (await resp.json())["reason"]
    # The list still answers, with the default retention policy (the spec's 30 days).
    resp = await api.get(URL, headers=as_user("admin"))
    assert resp.status == 200
    assert (await resp.json())["retention_policy"] == {
        "database_retention_days": 30,
        "files_retention_days": 30,
        "configuration_retention_days": 30,
    }


# --- GET -----------------------------------------------------------------------------------


def _record(dsn: str) -> dict[str, uuid.UUID]:
    """wsinfra's own dumps at known ages (the tests add the Supabase mirror's)."""
    return {
        "requested": own_backup(dsn, "wsinfra", "in_progress", timedelta(minutes=1)),
        "failed": own_backup(dsn, "wsinfra", "failed", timedelta(days=1)),
        "day2": own_backup(
            dsn, "wsinfra", "completed", timedelta(days=2), took=90, size=1_000_000_000
        ),
        "day10": own_backup(
            dsn, "wsinfra", "completed", timedelta(days=10), took=80, size=2_000_000_000
        ),
        "removed": own_backup(
            dsn, "wsinfra", "completed", timedelta(days=40), size=500_000_000, removed=True
        ),
    }


def _supabase(status: str, backup_id: int, days: float) -> record.SupabaseBackup:
    return record.SupabaseBackup(
        ref="abcdefghijklmnop",
        backup_id=backup_id,
        status=status,
        inserted_at=NOW - timedelta(days=days),
        physical=True,
        retention_days=7,
    )


async def test_the_list_and_its_summary(api: TestClient, seeded: Any) -> None:
    dsn, _ = seeded
    ids = _record(dsn)
    await mirror(
        dsn,
        _supabase("COMPLETED", 1, 3),
        _supabase("FAILED", 2, 5),
        _supabase("REMOVED", 3, 11),
    )
    resp = await api.get(URL, headers=as_user("admin"))
    assert resp.status == 200
    doc = await resp.json()
    listed = [(b["backup_target"], b["backup_method"], b["backup_status"]) for b in doc["backups"]]
    # Newest first, ours and the mirror's together.
    assert listed == [
        ("wsinfra", "pg_dump", "in_progress"),
        ("wsinfra", "pg_dump", "failed"),
        ("wsinfra", "pg_dump", "completed"),
        ("supabase:abcdefghijklmnop", "supabase_physical", "completed"),
        ("supabase:abcdefghijklmnop", "supabase_physical", "failed"),
        ("wsinfra", "pg_dump", "completed"),
        ("supabase:abcdefghijklmnop", "supabase_physical", "completed"),
        ("wsinfra", "pg_dump", "completed"),
    ]
    by_id = {b["id"]: b for b in doc["backups"]}
    day2 = by_id[str(ids["day2"])]
    completed = NOW - timedelta(days=2) + timedelta(seconds=90)
    assert day2["backup_size_bytes"] == 1_000_000_000
    assert datetime.fromisoformat(day2["completed_at"]) == completed
    assert datetime.fromisoformat(day2["expires_at"]) == completed + timedelta(days=30)
    assert day2["removed_at"] is None
    assert day2["error_message"] is None
    assert day2["duration_seconds"] == 90
    assert day2["location"].startswith("/dumps/wsinfra/")
    requested = by_id[str(ids["requested"])]
    assert "completed_at" not in requested
    assert "backup_size_bytes" not in requested
    assert requested["expires_at"] is None
    assert by_id[str(ids["failed"])]["error_message"] == "pg_dump: connection refused"
    assert by_id[str(ids["removed"])]["removed_at"] is not None
    supabase = [b for b in doc["backups"] if b["backup_method"] != "pg_dump"]
    assert [b["location"] for b in supabase] == ["supabase:abcdefghijklmnop"] * 3
    assert supabase[2]["removed_at"] is not None  # REMOVED in Supabase: history, not held
    # Not removed: in progress, failed, day 2, day 10 (ours), completed and failed (Supabase).
    # Held: day 2 and day 10 (1 GB + 2 GB; the mirror has no sizes). Oldest held: day 10.
    # Last 30 days: completed day 2, day 10, Supabase day 3 and day 11 (removed since, but it
    # was a success); failed day 1 and Supabase day 5: 4 of 6.
    summary = doc["backup_summary"]
    assert summary == {
        "total_backups": 6,
        "total_size_gb": 3.0,
        "oldest_backup_days": pytest.approx(10 - 80 / 86400, abs=0.01),
        "backup_success_rate_percent": pytest.approx(4 / 6 * 100),
        "retained_backups": 3,
        "completed_last_30_days": 4,
        "failed_last_30_days": 2,
    }
    assert doc["retention_policy"] == {
        "database_retention_days": 14,
        "files_retention_days": 7,
        "configuration_retention_days": 30,
    }
    assert doc["latest_drills"] == []


async def test_filters_and_the_summary_of_one_target(api: TestClient, seeded: Any) -> None:
    dsn, _ = seeded
    ids = _record(dsn)
    await mirror(dsn, _supabase("COMPLETED", 1, 3))
    admin = as_user("admin")
    doc = await (await api.get(f"{URL}?target=wsinfra", headers=admin)).json()
    assert {b["backup_target"] for b in doc["backups"]} == {"wsinfra"}
    assert len(doc["backups"]) == 5
    assert doc["backup_summary"]["total_backups"] == 4
    assert doc["backup_summary"]["backup_success_rate_percent"] == pytest.approx(2 / 3 * 100)
    doc = await (await api.get(f"{URL}?status=failed", headers=admin)).json()
    assert [b["id"] for b in doc["backups"]] == [str(ids["failed"])]
    # The summary is the record's, not the page's.
    assert doc["backup_summary"]["total_backups"] == 5
    doc = await (await api.get(f"{URL}?limit=2", headers=admin)).json()
    assert [b["id"] for b in doc["backups"]] == [str(ids["requested"]), str(ids["failed"])]
    since = (NOW - timedelta(days=2, hours=1)).isoformat().replace("+00:00", "Z")
    doc = await (await api.get(URL, params={"since": since}, headers=admin)).json()
    assert [b["id"] for b in doc["backups"]] == [
        str(ids["requested"]),
        str(ids["failed"]),
        str(ids["day2"]),
    ]
    # Nothing of a target: no rate at all (null), not 100 and not 0.
    doc = await (await api.get(f"{URL}?target=nothing-here", headers=admin)).json()
    assert doc["backups"] == []
    assert doc["backup_summary"] == {
        "total_backups": 0,
        "total_size_gb": 0.0,
        "oldest_backup_days": 0.0,
        "backup_success_rate_percent": None,
        "retained_backups": 0,
        "completed_last_30_days": 0,
        "failed_last_30_days": 0,
    }


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("limit=0", "limit must be a whole number from 1 to 500"),
        ("limit=501", "limit must be a whole number from 1 to 500"),
        ("limit=ten", "limit must be a whole number from 1 to 500"),
        ("status=removed", "status must be one of in_progress, completed, failed"),
        ("since=yesterday", "since must be an RFC 3339 time"),
        ("since=2026-01-01T00:00:00", "since must be an RFC 3339 time"),
        ("target=a%20b", "target must be"),
        ("limit=1&limit=2", "given more than once"),
        ("order=asc", "unknown query parameter"),
    ],
)
async def test_bad_filters_are_refused(api: TestClient, query: str, reason: str) -> None:
    resp = await api.get(f"{URL}?{query}", headers=as_user("admin"))
    assert resp.status == 422
    assert reason in (await resp.json())["reason"]


async def test_each_backup_says_whether_its_newest_drill_passed(
    api: TestClient, seeded: Any
) -> None:
    """The runbook's "prefer the newest backup whose drill passed", answerable from the list."""
    dsn, _ = seeded
    old = own_backup(dsn, "wsinfra", "completed", timedelta(days=2), took=60, size=10**6)
    new = own_backup(dsn, "wsinfra", "completed", timedelta(days=1), took=60, size=10**6)
    never = own_backup(dsn, "wsinfra", "completed", timedelta(hours=1), took=60, size=10**6)
    proven = drill(dsn, "wsinfra", "restore", "passed", timedelta(hours=40), rto=12, backup_id=old)
    drill(dsn, "wsinfra", "restore", "passed", timedelta(hours=20), rto=9, backup_id=new)
    broke = drill(dsn, "wsinfra", "restore", "failed", timedelta(hours=10), backup_id=new)
    drill(dsn, "wsinfra", "restore", "requested", timedelta(minutes=1), backup_id=never)
    doc = await (await api.get(f"{URL}?target=wsinfra", headers=as_user("admin"))).json()
    last = {b["id"]: b["last_drill"] for b in doc["backups"]}
    assert last[str(never)] is None  # requested, not finished: not proven yet
    assert last[str(new)]["id"] == str(broke)
    assert last[str(new)]["status"] == "failed"
    assert last[str(old)] == {
        "id": str(proven),
        "status": "passed",
        "finished_at": last[str(old)]["finished_at"],
        "rto_seconds": 12,
    }


async def test_the_newest_drill_of_each_target_and_type(api: TestClient, seeded: Any) -> None:
    dsn, _ = seeded
    drill(dsn, "wsinfra", "restore", "passed", timedelta(days=2), rto=40, restored=10**9)
    failed_check = {"check": "row_counts", "ok": False, "detail": "public.orders: 10 != 12"}
    newest = drill(
        dsn,
        "wsinfra",
        "restore",
        "failed",
        timedelta(days=1),
        rto=None,
        checks=[{"check": "schema", "ok": True, "detail": ""}, failed_check],
    )
    pitr = drill(
        dsn, "wsinfra", "point_in_time", "passed", timedelta(hours=3), rto=70, restored=5 * 10**8
    )
    drill(dsn, "other", "restore", "passed", timedelta(days=9), rto=20, restored=10**6)
    requested = drill(dsn, "other", "restore", "requested", timedelta(minutes=1))
    doc = await (await api.get(URL, headers=as_user("admin"))).json()
    drills = {(d["backup_target"], d["drill_type"]): d for d in doc["latest_drills"]}
    assert set(drills) == {
        ("wsinfra", "restore"),
        ("wsinfra", "point_in_time"),
        ("other", "restore"),
    }
    assert drills["wsinfra", "restore"]["id"] == str(newest)
    assert drills["wsinfra", "restore"]["status"] == "failed"
    assert drills["wsinfra", "restore"]["failed_checks"] == [failed_check]
    assert drills["wsinfra", "restore"]["error_message"] == "row counts differ"
    assert drills["wsinfra", "point_in_time"]["id"] == str(pitr)
    assert drills["wsinfra", "point_in_time"]["rto_seconds"] == 70
    assert drills["wsinfra", "point_in_time"]["rpo_seconds"] == 3600
    assert drills["wsinfra", "point_in_time"]["restored_bytes"] == 5 * 10**8
    assert drills["wsinfra", "point_in_time"]["finished_at"] is not None
    assert drills["other", "restore"]["id"] == str(requested)
    assert drills["other", "restore"]["status"] == "requested"
    doc = await (await api.get(f"{URL}?target=other", headers=as_user("admin"))).json()
    assert [d["id"] for d in doc["latest_drills"]] == [str(requested)]


async def test_the_documented_grants_suffice(
    seeded: Any,
    login_role: str,  # noqa: F811 - the fixture
    aiohttp_client: Any,
    tmp_path: Path,
) -> None:
    dsn, _ = seeded
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn.replace("user=postgres", f"user={login_role}")},
        backups=backups_config(tmp_path),
    )
    api = await start_client(aiohttp_client, cfg, secrets)
    resp = await api.post(URL, json={"backup_type": "database"}, headers=as_user("admin"))
    assert resp.status == 202
    resp = await api.get(URL, headers=as_user("admin"))
    assert resp.status == 200
    assert len((await resp.json())["backups"]) == 1


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"targets": [{"name": "a"}]}, "a has no location"),
        (
            {"targets": [{"name": "a"}], "location": "/d", "restore_targets": ["a"]},
            "a is also a backup target",
        ),
        ({"targets": [{"name": "a"}, {"name": "a"}], "location": "/d"}, "listed twice"),
        ({"default_target": "b"}, "is not one of targets"),
        ({"targets": [{"name": "Prod DB"}], "location": "/d"}, "backups.targets[0].name"),
        ({"retention_policy": {"database_retention_days": 0}}, "database_retention_days"),
        ({"data_loss_risk": {"none_within": "2h"}}, "must be ordered"),
        ({"rto_target": 120}, "rto_target"),
        (
            {"failover_steps": [{"step_name": "x", "duration": "1m", "dependencies": ["y"]}]},
            "y is not an earlier step",
        ),
    ],
)
def test_a_bad_backups_section_stops_the_start(
    tmp_path: Path, section: dict[str, Any], problem: str
) -> None:
    from common.config import ConfigError

    with pytest.raises(ConfigError, match="backups") as exc:
        write_config(tmp_path, backups=section)
    assert problem in str(exc.value)
