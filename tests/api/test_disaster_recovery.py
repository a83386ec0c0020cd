"""POST /api/infrastructure/disaster-recovery and GET /disaster-recovery/{id} on a real PostgreSQL
(drills and backups inserted as the worker and the Supabase mirror write them) and a real
Prometheus holding the worker's and the Supabase exporter's figures (backfilled,
tests/api/prometheus_data.py). Every estimate asserted is computed by hand from the rows and
samples below; the point-in-time window refuses target times before, after and beyond now, and
targets without one; an executed restore is only ever a backup_restore into a configured
non-production target, confirmed, and becomes one requested restore_drills row."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from api import disaster_recovery as dr
from api.backups_config import BackupsSettings
from schema import backups as record
from tests.api.conftest import USERS, as_user, rows, start_client, write_config
from tests.api.prometheus_data import openmetrics, prometheus_data
from tests.api.test_backups_endpoint import drill, mirror, own_backup, restart_clock

pytestmark = pytest.mark.integration
URL = "/api/infrastructure/disaster-recovery"
NOW = time.time()
SUPABASE = "abcdefghijklmnop"
# The worker's figures for wsinfra, and the Supabase exporter's for three projects.
SIZE = 6e9
PITR_EARLIEST = NOW - 2 * 86400
PITR_LATEST = NOW - 300
SUPABASE_WINDOW = 7 * 86400
SUPABASE_NEWEST = NOW - 3600


def _series() -> str:
    at = time.time()
    recent = [at - 90, at - 60]

    def gauge(name: str, labels: dict[str, str], value: float) -> tuple[Any, ...]:
        return (name, labels, [(t, value) for t in recent])

    return openmetrics(
        [
            gauge("backup_source_size_bytes", {"job": "backups", "target": "wsinfra"}, SIZE),
            gauge(
                "backup_pitr_earliest_timestamp_seconds",
                {"job": "backups", "target": "wsinfra"},
                PITR_EARLIEST,
            ),
            gauge(
                "backup_pitr_latest_timestamp_seconds",
                {"job": "backups", "target": "wsinfra"},
                PITR_LATEST,
            ),
            gauge("supabase_pitr_enabled", {"job": "supabase", "project": SUPABASE}, 1),
            gauge(
                "supabase_pitr_window_seconds",
                {"job": "supabase", "project": SUPABASE},
                SUPABASE_WINDOW,
            ),
            gauge(
                "supabase_backup_last_completed_timestamp_seconds",
                {"job": "supabase", "project": SUPABASE},
                SUPABASE_NEWEST,
            ),
            gauge("supabase_pitr_enabled", {"job": "supabase", "project": "nopitr0000000000"}, 0),
            gauge(
                "supabase_pitr_window_seconds",
                {"job": "supabase", "project": "nopitr0000000000"},
                86400,
            ),
            # The exporter gives the window's start itself: that wins over the span.
            gauge("supabase_pitr_enabled", {"job": "supabase", "project": "earliest00000000"}, 1),
            gauge(
                "supabase_pitr_window_seconds",
                {"job": "supabase", "project": "earliest00000000"},
                86400,
            ),
            gauge(
                "supabase_pitr_earliest_timestamp_seconds",
                {"job": "supabase", "project": "earliest00000000"},
                at - 3 * 86400,
            ),
            # PITR on, but the exporter has not seen its newest backup.
            gauge(
                "supabase_pitr_window_seconds",
                {"job": "supabase", "project": "nolast0000000000"},
                86400,
            ),
        ]
    )


known = prometheus_data(_series)

# Estimates chosen apart from each other, so that each step's figure says where it came from.
PREPARE, SWITCH, CONFIRM = 120.0, 180.0, 240.0
SUPABASE_RESTORE = 45 * 60.0
DEFAULT_THROUGHPUT = 4e6
DEFAULT_RESTORE = 50 * 60.0


def backups_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "targets": [{"name": "wsinfra"}, {"name": "other"}, {"name": "third"}],
        "location": str(tmp_path / "backups"),
        "restore_targets": ["drill-restore", "scratch-copy"],
        "estimates": {
            "prepare": "2m",
            "switch": "3m",
            "confirm": "4m",
            "supabase_restore": "45m",
            "restore": "50m",
            "wal_replay": "20m",
            "restore_bytes_per_second": DEFAULT_THROUGHPUT,
        },
    }


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def _record(dsn: str) -> dict[str, uuid.UUID]:
    """wsinfra: measured restores (and some that must not count), a point-in-time drill,
    backups; other: a backup whose manifest knows the size, no drill; third: a backup and
    nothing else; the Supabase project's backups mirrored."""
    restart_clock()
    h = timedelta(hours=1)
    for ago, restored, rto in (
        # bytes per second, newest first: 1e7, 2e7, 3e7, 2e7, 4e7 (median 2e7) ...
        (1 * h, 10**9, 100.0),
        (2 * h, 2 * 10**9, 100.0),
        (3 * h, 3 * 10**9, 100.0),
        (4 * h, 10**9, 50.0),
        (5 * h, 4 * 10**9, 100.0),
        # ... and a sixth, older than the newest five: not in the median.
        (6 * h, 10**9, 1.0),
    ):
        drill(dsn, "wsinfra", "restore", "passed", ago, rto=rto, restored=restored)
    drill(dsn, "wsinfra", "restore", "failed", timedelta(minutes=30))
    drill(dsn, "wsinfra", "restore", "passed", timedelta(minutes=20), rto=5.0)  # no size known
    drill(dsn, "other", "restore", "failed", timedelta(minutes=30))
    # WAL replay: 400 s, of which restoring 2e9 bytes at 2e7/s explains 100 s: 300 s.
    pitr = drill(dsn, "wsinfra", "point_in_time", "passed", h, rto=400.0, restored=2 * 10**9)
    drill(dsn, "wsinfra", "point_in_time", "passed", 24 * h, rto=9999.0, restored=10**9)
    ids = {
        "pitr_drill": pitr,
        "old": own_backup(dsn, "wsinfra", "completed", timedelta(days=2), took=60, size=10**9),
        "hours2": own_backup(dsn, "wsinfra", "completed", 2 * h, took=60, size=10**9),
        "seconds30": own_backup(
            dsn, "wsinfra", "completed", timedelta(seconds=90), took=60, size=10**9
        ),
        "failed": own_backup(dsn, "wsinfra", "failed", timedelta(minutes=5)),
        "removed": own_backup(
            dsn, "wsinfra", "completed", timedelta(days=3), took=60, size=10**9, removed=True
        ),
        "other": own_backup(
            dsn,
            "other",
            "completed",
            timedelta(minutes=40),
            took=60,
            manifest={"database_size_bytes": 10**9, "tables": 3},
        ),
        "third": own_backup(dsn, "third", "completed", timedelta(hours=5), took=60),
        # A point-in-time base backup, newer than every dump: never what a backup_restore takes.
        "base": own_backup(
            dsn, "wsinfra", "completed", timedelta(seconds=70), took=60, method="pg_basebackup"
        ),
    }
    await mirror(
        dsn,
        record.SupabaseBackup(
            ref=SUPABASE,
            backup_id=1,
            status="COMPLETED",
            inserted_at=datetime.now(UTC) - timedelta(days=2),
            physical=True,
            retention_days=7,
        ),
    )
    return ids


@pytest.fixture
async def world(
    seeded: Any, known: str, aiohttp_client: Any, tmp_path: Path
) -> tuple[TestClient, str, dict[str, uuid.UUID]]:
    dsn, _ = seeded
    ids = await _record(dsn)
    cfg, secrets, _ = write_config(
        tmp_path, database={"conninfo": dsn}, prometheus_url=known, backups=backups_config(tmp_path)
    )
    return await start_client(aiohttp_client, cfg, secrets), dsn, ids


async def _plan(api: TestClient, body: dict[str, Any], role: str = "admin") -> tuple[int, Any]:
    resp = await api.post(URL, json=body, headers=as_user(role))
    return resp.status, await resp.json()


def _steps(doc: dict[str, Any]) -> list[tuple[str, float, list[str]]]:
    return [
        (s["step_name"], s["estimated_duration_minutes"], s["dependencies"])
        for s in doc["recovery_plan"]["steps"]
    ]


COUNTS = {
    "restore_drills": "SELECT count(*) FROM restore_drills",
    "infrastructure_audit_log": "SELECT count(*) FROM infrastructure_audit_log",
}


def _count(dsn: str, table: str) -> int:
    return int(rows(dsn, COUNTS[table])[0][0])


# --- dry runs --------------------------------------------------------------------------------


async def test_a_backup_restore_plan_from_the_measured_drills(world: Any) -> None:
    api, dsn, ids = world
    drills, audit = _count(dsn, "restore_drills"), _count(dsn, "infrastructure_audit_log")
    status, doc = await _plan(api, {"recovery_type": "backup_restore", "recovery_scope": "full"})
    assert status == 200, doc
    # 6e9 bytes today (Prometheus) at the median 2e7 bytes/s of the newest five: 300 s.
    assert _steps(doc) == [
        (dr.PREPARE, 2.0, []),
        (dr.RESTORE, 5.0, [dr.PREPARE]),
        (dr.SWITCH, 3.0, [dr.RESTORE]),
        (dr.CONFIRM, 4.0, [dr.SWITCH]),
    ]
    assert doc["recovery_plan"]["estimated_duration_minutes"] == (120 + 300 + 180 + 240) / 60
    # The newest completed backup (completed 30 s ago) is restored: nothing is lost.
    assert doc["backup_id"] == str(ids["seconds30"])
    assert doc["recovery_plan"]["data_loss_risk"] == "none"
    assert doc["estimate_basis"] == {
        "restore_measured": True,
        "restore_drills_used": 5,
        "restore_throughput_bytes_per_second": 2e7,
        "database_size_bytes": SIZE,
        "database_size_source": "prometheus",
        "restore_seconds": 300.0,
        "wal_replay_measured": None,
        "wal_replay_seconds": None,
        "point_in_time_drill_id": None,
        "explanation": doc["estimate_basis"]["explanation"],
    }
    assert (
        "median throughput of the newest 5 passed restore drill(s)"
        in (doc["estimate_basis"]["explanation"])
    )
    assert (doc["rollback_available"], doc["contact_support"]) == (True, False)
    assert (doc["dry_run"], doc["status"], doc["backup_target"]) == (True, "planned", "wsinfra")
    assert doc["rto_target_seconds"] == 120
    assert "full is the database" in doc["notes"][0]
    assert uuid.UUID(doc["recovery_id"])
    # A dry run changes nothing and is not audited.
    assert _count(dsn, "restore_drills") == drills
    assert _count(dsn, "infrastructure_audit_log") == audit
    resp = await api.get(f"{URL}/{doc['recovery_id']}", headers=as_user("admin"))
    assert resp.status == 404


@pytest.mark.parametrize(
    ("backup", "risk"),
    [("seconds30", "none"), ("hours2", "moderate"), ("old", "significant")],
)
async def test_the_data_loss_risk_is_the_backup_s_age(world: Any, backup: str, risk: str) -> None:
    api, _, ids = world
    status, doc = await _plan(
        api,
        {
            "recovery_type": "backup_restore",
            "recovery_scope": "database_only",
            "backup_id": str(ids[backup]),
        },
    )
    assert status == 200, doc
    assert doc["backup_id"] == str(ids[backup])
    assert doc["recovery_plan"]["data_loss_risk"] == risk


async def test_without_a_drill_the_defaults_say_so(world: Any) -> None:
    api, _, _ = world
    # other: no passed drill; its size from the newest backup's manifest (1e9 bytes) at the
    # configured 4e6 bytes/s: 250 s.
    status, doc = await _plan(
        api,
        {
            "recovery_type": "backup_restore",
            "recovery_scope": "database_only",
            "backup_target": "other",
        },
    )
    assert status == 200, doc
    assert _steps(doc)[1] == (dr.RESTORE, 4.2, [dr.PREPARE])  # 250 s, up to a tenth of a minute
    assert doc["recovery_plan"]["estimated_duration_minutes"] == 13.2  # 790 s
    basis = doc["estimate_basis"]
    assert (basis["restore_measured"], basis["restore_drills_used"]) == (False, 0)
    assert (basis["database_size_bytes"], basis["database_size_source"]) == (1e9, "backup_manifest")
    assert basis["restore_throughput_bytes_per_second"] == DEFAULT_THROUGHPUT
    assert "no restore drill of other has passed" in basis["explanation"]
    assert doc["recovery_plan"]["data_loss_risk"] == "minimal"  # completed 39 minutes ago
    # third: neither a drill nor a size: the configured default restore (50 minutes).
    status, doc = await _plan(
        api,
        {
            "recovery_type": "backup_restore",
            "recovery_scope": "database_only",
            "backup_target": "third",
        },
    )
    assert status == 200, doc
    assert _steps(doc)[1] == (dr.RESTORE, 50.0, [dr.PREPARE])
    assert doc["recovery_plan"]["estimated_duration_minutes"] == 59.0
    assert doc["estimate_basis"]["database_size_source"] is None
    assert "size is unknown" in doc["estimate_basis"]["explanation"]


async def test_a_point_in_time_plan_adds_the_measured_wal_replay(world: Any) -> None:
    api, _, ids = world
    target = NOW - 3600
    status, doc = await _plan(
        api,
        {
            "recovery_type": "point_in_time",
            "recovery_scope": "database_only",
            "target_time": _iso(target),
        },
    )
    assert status == 200, doc
    assert _steps(doc) == [
        (dr.PREPARE, 2.0, []),
        (dr.PITR_BASE, 5.0, [dr.PREPARE]),
        (dr.PITR_REPLAY, 5.0, [dr.PITR_BASE]),  # 400 s - 2e9 / 2e7 s
        (dr.SWITCH, 3.0, [dr.PITR_REPLAY]),
        (dr.CONFIRM, 4.0, [dr.SWITCH]),
    ]
    assert doc["recovery_plan"]["estimated_duration_minutes"] == 19.0
    assert doc["recovery_plan"]["data_loss_risk"] == "none"
    assert doc["estimate_basis"]["wal_replay_measured"] is True
    assert doc["estimate_basis"]["wal_replay_seconds"] == 300.0
    assert doc["estimate_basis"]["point_in_time_drill_id"] == str(ids["pitr_drill"])
    assert doc["pitr_window"]["source"] == "backup_worker"
    assert _at(doc["pitr_window"]["earliest"]) == pytest.approx(PITR_EARLIEST, abs=0.001)
    assert _at(doc["pitr_window"]["latest"]) == pytest.approx(PITR_LATEST, abs=0.001)
    assert _at(doc["target_time"]) == pytest.approx(target, abs=0.001)
    assert doc["backup_id"] is None
    assert (doc["rollback_available"], doc["contact_support"]) == (True, False)


@pytest.mark.parametrize(
    ("target_time", "reason"),
    [
        (PITR_EARLIEST - 60, "before the earliest recoverable time"),
        (PITR_LATEST + 60, "after the latest recoverable time"),
        (NOW + 3600, "is in the future"),
    ],
)
async def test_a_target_time_outside_the_window_is_refused(
    world: Any, target_time: float, reason: str
) -> None:
    api, _, _ = world
    status, doc = await _plan(
        api,
        {
            "recovery_type": "point_in_time",
            "recovery_scope": "database_only",
            "target_time": _iso(target_time),
        },
    )
    assert status == 422
    assert reason in doc["reason"]
    assert f"the window is {_iso(PITR_EARLIEST)}" in doc["reason"]


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("other", "the backup worker exports no point-in-time window"),
        ("supabase:nopitr0000000000", "point-in-time recovery off"),
        ("supabase:unknown000000000", "reports no point-in-time window"),
    ],
)
async def test_no_window_no_point_in_time_recovery(world: Any, target: str, why: str) -> None:
    api, _, _ = world
    status, doc = await _plan(
        api,
        {
            "recovery_type": "point_in_time",
            "recovery_scope": "database_only",
            "backup_target": target,
            "target_time": _iso(NOW - 600),
        },
    )
    assert status == 422
    assert "no point-in-time recovery for this target" in doc["reason"]
    assert why in doc["reason"]


async def test_supabase_point_in_time_is_done_in_supabase(world: Any) -> None:
    api, dsn, _ = world
    drills = _count(dsn, "restore_drills")
    body = {
        "recovery_type": "point_in_time",
        "recovery_scope": "database_only",
        "backup_target": f"supabase:{SUPABASE}",
        "target_time": _iso(NOW - 86400),
    }
    status, doc = await _plan(api, body)
    assert status == 200, doc
    assert _steps(doc) == [
        (dr.PREPARE, 2.0, []),
        (dr.SUPABASE_PITR, 45.0, [dr.PREPARE]),
        (dr.CONFIRM, 4.0, [dr.SUPABASE_PITR]),
    ]
    assert doc["recovery_plan"]["data_loss_risk"] == "none"
    assert (doc["rollback_available"], doc["contact_support"]) == (False, True)
    # The window: the span back from the newest physical backup, up to now.
    assert _at(doc["pitr_window"]["earliest"]) == pytest.approx(
        SUPABASE_NEWEST - SUPABASE_WINDOW, abs=0.001
    )
    assert _at(doc["pitr_window"]["latest"]) == pytest.approx(time.time(), abs=60)
    assert any("never calls a restore endpoint" in n for n in doc["notes"])
    assert doc["estimate_basis"]["restore_measured"] is False
    assert _count(dsn, "restore_drills") == drills
    body["target_time"] = _iso(SUPABASE_NEWEST - SUPABASE_WINDOW - 60)
    status, doc = await _plan(api, body)
    assert status == 422
    assert "before the earliest recoverable time" in doc["reason"]
    # Without the newest backup's time, the window is counted back from now (the safe side).
    body["backup_target"] = "supabase:nolast0000000000"
    body["target_time"] = _iso(NOW - 3600)
    status, doc = await _plan(api, body)
    assert status == 200, doc
    assert any("counted back from now" in n for n in doc["notes"])
    assert _at(doc["pitr_window"]["earliest"]) == pytest.approx(time.time() - 86400, abs=60)
    body["target_time"] = _iso(NOW - 86400 - 600)
    status, doc = await _plan(api, body)
    assert status == 422


async def test_the_supabase_window_starts_at_the_earliest_physical_backup(world: Any) -> None:
    api, _, _ = world
    body = {
        "recovery_type": "point_in_time",
        "recovery_scope": "database_only",
        "backup_target": "supabase:earliest00000000",
        "target_time": _iso(NOW - 2 * 86400),  # beyond the 1-day span, inside the window
    }
    status, doc = await _plan(api, body)
    assert status == 200, doc
    assert _at(doc["pitr_window"]["earliest"]) == pytest.approx(time.time() - 3 * 86400, abs=300)
    body["target_time"] = _iso(NOW - 3 * 86400 - 600)
    status, doc = await _plan(api, body)
    assert status == 422
    assert "before the earliest recoverable time" in doc["reason"]


async def test_a_supabase_backup_restore_plan(world: Any) -> None:
    api, _, _ = world
    status, doc = await _plan(
        api,
        {
            "recovery_type": "backup_restore",
            "recovery_scope": "database_only",
            "backup_target": f"supabase:{SUPABASE}",
        },
    )
    assert status == 200, doc
    assert _steps(doc) == [
        (dr.PREPARE, 2.0, []),
        (dr.SUPABASE_RESTORE, 45.0, [dr.PREPARE]),
        (dr.CONFIRM, 4.0, [dr.SUPABASE_RESTORE]),
    ]
    assert doc["recovery_plan"]["estimated_duration_minutes"] == 51.0
    assert doc["recovery_plan"]["data_loss_risk"] == "significant"  # two days old
    assert (doc["rollback_available"], doc["contact_support"]) == (False, False)


async def test_a_failover_plan_from_the_config(world: Any) -> None:
    api, _, _ = world
    status, doc = await _plan(api, {"recovery_type": "failover", "recovery_scope": "full"})
    assert status == 200, doc
    confirm, promote, point = (s.step_name for s in BackupsSettings().failover_steps)
    assert _steps(doc) == [
        (confirm, 0.5, []),
        (promote, 1.0, [confirm]),
        (point, 0.5, [promote]),
    ]
    assert doc["recovery_plan"]["estimated_duration_minutes"] == 2.0  # the spec's RTO target
    assert doc["recovery_plan"]["data_loss_risk"] == "minimal"
    assert (doc["rollback_available"], doc["contact_support"]) == (False, True)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"recovery_type": "failover", "recovery_scope": "files_only"}, "databases only"),
        ({"recovery_type": "point_in_time", "recovery_scope": "full"}, "target_time is required"),
        (
            {
                "recovery_type": "point_in_time",
                "recovery_scope": "full",
                "target_time": "yesterday",
            },
            "target_time must be an RFC 3339 time",
        ),
        (
            {
                "recovery_type": "point_in_time",
                "recovery_scope": "full",
                "target_time": "2026-01-01T00:00:00",
            },
            "target_time must be an RFC 3339 time",
        ),
        (
            {
                "recovery_type": "backup_restore",
                "recovery_scope": "full",
                "target_time": "2026-01-01T00:00:00Z",
            },
            "target_time is for point_in_time",
        ),
        (
            {"recovery_type": "failover", "recovery_scope": "full", "backup_id": str(uuid.uuid4())},
            "backup_id is for backup_restore",
        ),
        (
            {
                "recovery_type": "backup_restore",
                "recovery_scope": "full",
                "backup_id": str(uuid.uuid4()),
            },
            "no backup with this backup_id",
        ),
        (
            {"recovery_type": "backup_restore", "recovery_scope": "full", "backup_target": "nope"},
            "configured targets: wsinfra, other, third",
        ),
        ({"recovery_type": "backup_restore"}, "recovery_scope"),
        ({"recovery_type": "backup_restore", "recovery_scope": "full", "dry_run": "no"}, "dry_run"),
        ({"recovery_type": "restart", "recovery_scope": "full"}, "recovery_type"),
    ],
)
async def test_bad_requests_are_refused_with_a_reason(
    world: Any, body: dict[str, Any], reason: str
) -> None:
    api, _, _ = world
    status, doc = await _plan(api, body)
    assert status == 422, doc
    assert reason in doc["reason"]


@pytest.mark.parametrize("backup", ["failed", "removed", "other", "base"])
async def test_a_backup_that_cannot_be_restored_is_refused(world: Any, backup: str) -> None:
    api, _, ids = world
    status, doc = await _plan(
        api,
        {
            "recovery_type": "backup_restore",
            "recovery_scope": "full",
            "backup_id": str(ids[backup]),
            "backup_target": "wsinfra",
        },
    )
    assert status == 422
    assert {
        "failed": "not completed",
        "removed": "was removed",
        "other": "not of wsinfra",
        "base": "pg_basebackup backup, not a pg_dump",
    }[backup] in doc["reason"]


@pytest.mark.parametrize("role", ["developer", "ops", "finance"])
async def test_only_admins_may_plan_or_restore(world: Any, role: str) -> None:
    api, dsn, _ = world
    drill_id = rows(dsn, "SELECT id FROM restore_drills LIMIT 1")[0][0]
    for body in (
        {"recovery_type": "failover", "recovery_scope": "full"},
        {
            "recovery_type": "backup_restore",
            "recovery_scope": "full",
            "dry_run": False,
            "restore_target": "anything",
            "confirm": "anything",
        },
    ):
        status, doc = await _plan(api, body, role)
        assert status == 403, doc
        assert "drill-restore" not in doc["reason"]
    resp = await api.get(f"{URL}/{drill_id}", headers=as_user(role))
    assert resp.status == 403


async def test_without_prometheus_a_restore_plan_uses_the_manifest(
    seeded: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    dsn, _ = seeded
    await _record(dsn)
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn},
        prometheus_url="http://127.0.0.1:9",
        backups=backups_config(tmp_path),
    )
    api = await start_client(aiohttp_client, cfg, secrets)
    status, doc = await _plan(
        api, {"recovery_type": "backup_restore", "recovery_scope": "full", "backup_target": "other"}
    )
    assert status == 200, doc
    assert doc["estimate_basis"]["database_size_source"] == "backup_manifest"
    # A window cannot be known without Prometheus: no guess.
    status, doc = await _plan(
        api,
        {
            "recovery_type": "point_in_time",
            "recovery_scope": "full",
            "target_time": _iso(NOW - 600),
        },
    )
    assert status == 503
    assert doc["error"] == "prometheus_unavailable"


# --- executed restores -----------------------------------------------------------------------


def _execute(**extra: Any) -> dict[str, Any]:
    return {
        "recovery_type": "backup_restore",
        "recovery_scope": "database_only",
        "dry_run": False,
        **extra,
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_execute(), "restore_target is required when dry_run is false"),
        (_execute(restore_target="drill-restore"), "confirm must repeat restore_target"),
        (
            _execute(restore_target="drill-restore", confirm="drill-restore "),
            "confirm must repeat restore_target",
        ),
        (_execute(restore_target="wsinfra", confirm="wsinfra"), "unknown restore_target"),
        (_execute(restore_target="prod", confirm="prod"), "drill-restore, scratch-copy"),
        (
            {
                **_execute(restore_target="drill-restore", confirm="drill-restore"),
                "recovery_type": "point_in_time",
                "target_time": _iso(NOW - 3600),
            },
            "only backup_restore can be executed",
        ),
        (
            {**_execute(), "recovery_type": "failover"},
            "only backup_restore can be executed",
        ),
        (
            _execute(
                restore_target="drill-restore",
                confirm="drill-restore",
                backup_target=f"supabase:{SUPABASE}",
            ),
            "restored in Supabase",
        ),
    ],
)
async def test_an_executed_restore_must_be_named_and_confirmed(
    world: Any, body: dict[str, Any], reason: str
) -> None:
    api, dsn, _ = world
    drills = _count(dsn, "restore_drills")
    status, doc = await _plan(api, body)
    assert status == 422, doc
    assert reason in doc["reason"]
    assert _count(dsn, "restore_drills") == drills
    assert _count(dsn, "infrastructure_audit_log") == 0


async def test_an_executed_restore_is_a_drill_row_the_worker_claims(world: Any) -> None:
    api, dsn, ids = world
    body = _execute(restore_target="drill-restore", confirm="drill-restore")
    status, doc = await _plan(api, body)
    assert status == 202, doc
    recovery_id = uuid.UUID(doc["recovery_id"])
    assert (doc["status"], doc["dry_run"], doc["restore_target"]) == (
        "requested",
        False,
        "drill-restore",
    )
    assert doc["backup_id"] == str(ids["seconds30"])  # the newest completed dump
    assert _steps(doc)[1] == (dr.RESTORE, 5.0, [dr.PREPARE])
    assert rows(
        dsn,
        "SELECT drill_type, backup_target, backup_id, restore_into, status, trigger,"
        " requested_by FROM restore_drills WHERE id = %s",
        recovery_id,
    ) == [
        (
            "restore",
            "wsinfra",
            ids["seconds30"],
            "drill-restore",
            "requested",
            "api",
            USERS["admin"],
        )
    ]
    audit = rows(dsn, "SELECT action, target_table, target_id, after FROM infrastructure_audit_log")
    assert [a[:3] for a in audit] == [("dr.restore", "restore_drills", str(recovery_id))]
    assert audit[0][3]["restore_into"] == "drill-restore"
    # One restore into a target at a time; another target may go.
    status, doc = await _plan(api, body)
    assert status == 409
    assert doc["error"] == "backup_conflict"
    assert str(recovery_id) in doc["reason"]
    status, doc = await _plan(
        api,
        _execute(
            restore_target="scratch-copy", confirm="scratch-copy", backup_id=str(ids["hours2"])
        ),
    )
    assert status == 202, doc
    assert doc["backup_id"] == str(ids["hours2"])
    # Followed through GET.
    resp = await api.get(f"{URL}/{recovery_id}", headers=as_user("admin"))
    assert resp.status == 200
    got = await resp.json()
    assert (got["recovery_id"], got["status"], got["restore_into"], got["requested_by"]) == (
        str(recovery_id),
        "requested",
        "drill-restore",
        str(USERS["admin"]),
    )
    assert (got["rto_seconds"], got["checks"], got["failed_checks"]) == (None, [], [])
    # The worker finishes it: the outcome is there.
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        job = await record.claim_drill_request(conn, ["wsinfra"])
        assert job is not None
        assert (job.id, job.restore_into, job.backup_id) == (
            recovery_id,
            "drill-restore",
            ids["seconds30"],
        )
        await record.finish_drill(
            conn,
            recovery_id,
            record.DrillOutcome(
                passed=False,
                checks=[
                    {"check": "schema", "ok": True, "detail": ""},
                    {"check": "row_counts", "ok": False, "detail": "orders: 10 != 12"},
                ],
                rto_seconds=42.0,
                rpo_seconds=90.0,
                restored_bytes=10**9,
                error="row counts differ",
            ),
        )
        await conn.commit()
    got = await (await api.get(f"{URL}/{recovery_id}", headers=as_user("admin"))).json()
    assert (got["status"], got["rto_seconds"], got["rpo_seconds"]) == ("failed", 42.0, 90.0)
    assert len(got["checks"]) == 2
    assert got["failed_checks"] == [
        {"check": "row_counts", "ok": False, "detail": "orders: 10 != 12"}
    ]


@pytest.mark.parametrize("path", [str(uuid.uuid4()), "not-a-uuid", "1"])
async def test_unknown_recoveries_are_not_found(world: Any, path: str) -> None:
    api, _, _ = world
    resp = await api.get(f"{URL}/{path}", headers=as_user("admin"))
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
