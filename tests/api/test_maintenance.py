"""Maintenance windows on a real PostgreSQL and a REAL Alertmanager: an admin's window becomes
one silence with the window's matchers, start and end (pending until it starts, silencing its
services' alerts while it runs, expired when it is ended early); everybody else is refused by
row-level security; overlapping, past, over-long and over-budget windows are refused with a
reason; the windows file is synced idempotently; the metric and services_in_maintenance see a
running window; a commit that fails after the silence was made takes the silence back.

Windows that run now name a service unique to the test (Alertmanager is shared by the session:
a running silence of a common service would silence other tests' alerts)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from aiohttp.test_utils import TestClient

from api.maintenance import MAINTENANCE, services_in_maintenance, sync_config
from api.maintenance_config import DEFAULT_SERVICES, MaintenanceSettings
from api.state import SERVICES
from common.config import ConfigError
from tests.api.conftest import (
    MACHINE,
    USERS,
    am_alert,
    am_get,
    am_post_alert,
    as_user,
    execute,
    rows,
    start_client,
    write_config,
)
from tests.api.test_roles import login_role  # noqa: F401 - the fixture
from tests.conftest import ROOT

pytestmark = pytest.mark.integration
URL = "/api/infrastructure/maintenance"
ADMIN_MACHINE = uuid.UUID("00000000-0000-4000-8000-0000000000c3")
ADMIN_TOKEN = "maintenance-admin-machine-token-0123456789abcdef"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _body(services: list[str], starts: datetime, ends: datetime, reason: str = "r") -> Any:
    return {
        "services": services,
        "starts_at": _iso(starts),
        "ends_at": _iso(ends),
        "reason": reason,
    }


def _silence(am: str, silence_id: str) -> dict[str, Any]:
    return dict(am_get(f"{am}/api/v2/silence/{silence_id}"))


def _silences_of(am: str, window_id: str) -> list[dict[str, Any]]:
    return [s for s in am_get(f"{am}/api/v2/silences") if window_id in s["comment"]]


def _next_month(days: int = 2) -> datetime:
    """Midnight UTC `days` into next month: windows there share one calendar month."""
    now = datetime.now(UTC)
    first = (
        now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)
    ).replace(day=1)
    return first + timedelta(days=days)


def _maintenance_config(tmp_path: Path, **maintenance: Any) -> dict[str, Any]:
    """write_config overrides: maintenance settings, and an admin machine for the windows file."""
    (tmp_path / "admin_token").write_text(ADMIN_TOKEN + "\n")
    return {
        "machine_tokens": [
            {
                "name": "grafana",
                "token_file": str(tmp_path / "machine_token"),
                "role": "ops",
                "user_id": str(MACHINE),
            },
            {
                "name": "planner",
                "token_file": str(tmp_path / "admin_token"),
                "role": "admin",
                "user_id": str(ADMIN_MACHINE),
            },
        ],
        "maintenance": maintenance,
    }


@pytest.fixture
def unique() -> str:
    return f"mt-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def mapi(
    seeded: tuple[str, Any], alertmanager: str, aiohttp_client: Any, tmp_path: Path, unique: str
) -> TestClient:
    dsn, _ = seeded
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn},
        alertmanager_url=alertmanager,
        **_maintenance_config(tmp_path, services=[*DEFAULT_SERVICES, unique]),
    )
    return await start_client(aiohttp_client, cfg, secrets)


async def test_an_admin_window_becomes_one_pending_silence_of_its_services(
    mapi: TestClient, seeded: tuple[str, Any], alertmanager: str
) -> None:
    dsn, _ = seeded
    starts = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    ends = starts + timedelta(hours=1)
    resp = await mapi.post(
        URL,
        json=_body(["vercel", "database"], starts, ends, "Postgres upgrade"),
        headers=as_user("admin"),
    )
    assert resp.status == 201, await resp.text()
    window = await resp.json()
    assert window["services"] == ["database", "vercel"]
    assert window["state"] == "upcoming"
    assert window["source"] == "api"
    assert window["created_by"] == str(USERS["admin"])
    assert _time(window["starts_at"]) == starts
    assert _time(window["ends_at"]) == ends

    silence = _silence(alertmanager, window["silence_id"])
    assert silence["matchers"] == [
        {"name": "service", "value": "database|vercel", "isRegex": True, "isEqual": True}
    ]
    assert _time(silence["startsAt"]) == starts
    assert _time(silence["endsAt"]) == ends
    assert silence["status"]["state"] == "pending"
    assert silence["createdBy"] == "admin@example.com"
    assert window["id"] in silence["comment"]
    assert "Postgres upgrade" in silence["comment"]

    assert rows(dsn, "SELECT silence_id, source FROM maintenance_windows") == [
        (window["silence_id"], "api")
    ]
    audit = rows(
        dsn,
        "SELECT action, actor_user_id, target_table, target_id, after FROM infrastructure_audit_log",
    )
    assert [(a, u, t, i) for a, u, t, i, _ in audit] == [
        ("maintenance.create", USERS["admin"], "maintenance_windows", window["id"])
    ]
    assert audit[0][4]["alertmanager"]["silence"]["matchers"] == silence["matchers"]

    # Whoever the alerts policy admits sees it; finance sees nothing (not a 403).
    for role in ("admin", "ops", "developer"):
        listed = await (await mapi.get(URL, headers=as_user(role))).json()
        assert [w["id"] for w in listed["windows"]] == [window["id"]], role
        assert listed["monthly_budget_seconds"] == 4 * 3600
    assert (await (await mapi.get(URL, headers=as_user("finance"))).json())["windows"] == []


async def test_only_admins_may_declare_or_end_windows(
    mapi: TestClient, seeded: tuple[str, Any], alertmanager: str
) -> None:
    dsn, _ = seeded
    starts = datetime.now(UTC) + timedelta(hours=3)
    before = len(am_get(f"{alertmanager}/api/v2/silences"))
    for role in ("ops", "developer", "finance"):
        resp = await mapi.post(
            URL, json=_body(["billing"], starts, starts + timedelta(hours=1)), headers=as_user(role)
        )
        assert resp.status == 403, role
        assert (await resp.json())["error"] == "forbidden"
    assert len(am_get(f"{alertmanager}/api/v2/silences")) == before  # Alertmanager untouched
    assert rows(dsn, "SELECT count(*) FROM maintenance_windows") == [(0,)]

    made = await mapi.post(
        URL, json=_body(["billing"], starts, starts + timedelta(hours=1)), headers=as_user("admin")
    )
    window = await made.json()
    for role in ("ops", "developer", "finance"):
        resp = await mapi.delete(f"{URL}/{window['id']}", headers=as_user(role))
        assert resp.status == 403, role
    assert _silence(alertmanager, window["silence_id"])["status"]["state"] == "pending"
    # An admin naming no window gets a 404.
    resp = await mapi.delete(f"{URL}/{uuid.uuid4()}", headers=as_user("admin"))
    assert resp.status == 404
    resp = await mapi.delete(f"{URL}/not-a-uuid", headers=as_user("admin"))
    assert resp.status == 422
    # A UUID with a trailing newline passed a `$` check and was a 500.
    resp = await mapi.delete(f"{URL}/{window['id']}%0A", headers=as_user("admin"))
    assert resp.status == 422, await resp.text()


async def test_overlapping_windows_of_a_same_service_are_refused(
    mapi: TestClient, seeded: tuple[str, Any]
) -> None:
    dsn, _ = seeded
    t0 = _next_month()
    first = await mapi.post(
        URL, json=_body(["vercel"], t0, t0 + timedelta(hours=1)), headers=as_user("admin")
    )
    assert first.status == 201
    first_id = (await first.json())["id"]
    resp = await mapi.post(
        URL,
        json=_body(["billing", "vercel"], t0 + timedelta(minutes=30), t0 + timedelta(hours=2)),
        headers=as_user("admin"),
    )
    assert resp.status == 409
    body = await resp.json()
    assert body["error"] == "maintenance_conflict"
    assert first_id in body["reason"]
    assert "vercel" in body["reason"]
    # Another service at the same time, and the same service right after: both fine.
    other = await mapi.post(
        URL, json=_body(["billing"], t0, t0 + timedelta(hours=1)), headers=as_user("admin")
    )
    assert other.status == 201
    after = await mapi.post(
        URL,
        json=_body(["vercel"], t0 + timedelta(hours=1), t0 + timedelta(hours=2)),
        headers=as_user("admin"),
    )
    assert after.status == 201
    assert rows(dsn, "SELECT count(*) FROM maintenance_windows") == [(3,)]


async def test_past_malformed_and_over_long_windows_are_refused_with_a_reason(
    mapi: TestClient, seeded: tuple[str, Any]
) -> None:
    dsn, _ = seeded
    now = datetime.now(UTC)
    cases = [
        (_body(["vercel"], now - timedelta(hours=2), now - timedelta(hours=1)), "past"),
        (_body(["vercel"], now - timedelta(hours=1), now + timedelta(hours=1)), "start_grace"),
        (_body(["vercel"], now + timedelta(hours=2), now + timedelta(hours=1)), "after starts_at"),
        (_body(["vercel"], now + timedelta(hours=1), now + timedelta(hours=6)), "max_window"),
        (_body(["nosuch"], now + timedelta(hours=1), now + timedelta(hours=2)), "unknown service"),
        (_body(["vercel", "vercel"], now + timedelta(hours=1), now + timedelta(hours=2)), "twice"),
        ({**_body(["vercel"], now, now), "starts_at": "2030-01-01T00:00:00"}, "starts_at"),
        ({**_body(["vercel"], now, now), "reason": "   "}, "reason"),
        ({**_body([], now, now)}, "services"),
        # Found by an outside test: far dates were a 500 (OverflowError), a second a window.
        (
            {
                **_body(["vercel"], now, now),
                "starts_at": "9999-12-31T22:00:00Z",
                "ends_at": "9999-12-31T23:00:00Z",
            },
            "max_ahead",
        ),
        (
            {
                **_body(["vercel"], now, now),
                "starts_at": "9999-12-31T22:00:00-05:00",
                "ends_at": "9999-12-31T23:00:00-05:00",
            },
            "not a valid date",
        ),
        (
            {
                **_body(["vercel"], now, now),
                "starts_at": "0001-01-01T00:00:00+05:00",
                "ends_at": "0001-01-01T01:00:00+05:00",
            },
            "not a valid date",
        ),
        (
            _body(["vercel"], now + timedelta(hours=1), now + timedelta(hours=1, microseconds=1)),
            "min_window",
        ),
    ]
    for body, why in cases:
        resp = await mapi.post(URL, json=body, headers=as_user("admin"))
        assert resp.status == 422, (why, await resp.text())
        assert why in (await resp.json())["reason"], why
    assert rows(dsn, "SELECT count(*) FROM maintenance_windows") == [(0,)]


async def test_the_monthly_budget_counts_every_window_of_the_service(
    mapi: TestClient, seeded: tuple[str, Any]
) -> None:
    t0 = _next_month()
    big = await mapi.post(
        URL, json=_body(["recorder"], t0, t0 + timedelta(hours=3)), headers=as_user("admin")
    )
    assert big.status == 201
    later = t0 + timedelta(days=3)
    resp = await mapi.post(
        URL, json=_body(["recorder"], later, later + timedelta(hours=1.5)), headers=as_user("admin")
    )
    assert resp.status == 409
    reason = (await resp.json())["reason"]
    assert "recorder" in reason
    assert "monthly budget of 4 h" in reason
    assert "3.00 h already" in reason
    # Exactly the budget is allowed.
    ok = await mapi.post(
        URL, json=_body(["recorder"], later, later + timedelta(hours=1)), headers=as_user("admin")
    )
    assert ok.status == 201
    # A window cancelled before it starts uses nothing: its hours are free again.
    ended = await mapi.delete(f"{URL}/{(await big.json())['id']}", headers=as_user("admin"))
    assert ended.status == 200
    again = await mapi.post(
        URL,
        json=_body(["recorder"], later + timedelta(hours=1), later + timedelta(hours=3)),
        headers=as_user("admin"),
    )
    assert again.status == 201


async def test_a_running_window_silences_its_service_and_ending_it_expires_the_silence(
    mapi: TestClient, seeded: tuple[str, Any], alertmanager: str, unique: str
) -> None:
    dsn, _ = seeded
    now = datetime.now(UTC)
    resp = await mapi.post(
        URL, json=_body([unique], now, now + timedelta(hours=1)), headers=as_user("admin")
    )
    assert resp.status == 201, await resp.text()
    window = await resp.json()
    assert window["state"] == "active"
    assert _silence(alertmanager, window["silence_id"])["status"]["state"] == "active"

    labels = {"alertname": "UptimeTargetDown", "severity": "critical", "service": unique}
    am_post_alert(alertmanager, labels)
    other = {**labels, "service": f"{unique}-other"}  # another service: not silenced
    am_post_alert(alertmanager, other)
    assert _wait_silenced_by(alertmanager, labels) == [window["silence_id"]]
    assert _wait_silenced_by(alertmanager, other) == []

    # The metric and /health's helper see it (with the API's own role, no caller).
    metrics = await (await mapi.get("/metrics")).text()
    assert f'api_maintenance_window_active{{service="{unique}"}} 1.0' in metrics
    assert 'api_maintenance_window_active{service="vercel"} 0.0' in metrics
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        assert await services_in_maintenance(conn) == frozenset({unique})

    ended = await mapi.delete(f"{URL}/{window['id']}", headers=as_user("admin"))
    assert ended.status == 200
    assert (await ended.json())["state"] == "ended"
    assert _silence(alertmanager, window["silence_id"])["status"]["state"] == "expired"
    assert _wait_silenced_by(alertmanager, labels) == []
    metrics = await (await mapi.get("/metrics")).text()
    assert f'api_maintenance_window_active{{service="{unique}"}} 0.0' in metrics
    again = await mapi.delete(f"{URL}/{window['id']}", headers=as_user("admin"))
    assert again.status == 409
    assert "already ended or cancelled at " in (await again.json())["reason"]
    assert [
        r[0] for r in rows(dsn, "SELECT action FROM infrastructure_audit_log ORDER BY occurred_at")
    ] == [
        "maintenance.create",
        "maintenance.end",
    ]


def _wait_silenced_by(am: str, labels: dict[str, str], timeout: float = 5.0) -> list[str]:
    """The alert's silencedBy once Alertmanager has settled on it (silences apply at once to
    the API's view, but an alert posted just now may still be unprocessed)."""
    deadline = time.monotonic() + timeout
    while True:
        alert = am_alert(am, labels)
        assert alert is not None
        if alert["status"]["state"] != "unprocessed" or time.monotonic() > deadline:
            return list(alert["status"]["silencedBy"])
        time.sleep(0.05)


async def test_metric_is_absent_when_the_database_is_unreadable(
    mapi: TestClient, seeded: tuple[str, Any]
) -> None:
    dsn, _ = seeded
    metrics = await (await mapi.get("/metrics")).text()
    assert 'api_maintenance_window_active{service="vercel"} 0.0' in metrics
    execute(dsn, "ALTER FUNCTION public.wsinfra_services_in_maintenance() RENAME TO gone")
    metrics = await (await mapi.get("/metrics")).text()
    assert "api_maintenance_window_active{" not in metrics


async def test_a_commit_that_fails_after_the_silence_expires_it_again(
    mapi: TestClient, seeded: tuple[str, Any], alertmanager: str
) -> None:
    dsn, _ = seeded
    # A deferred constraint trigger: the failure comes at COMMIT, after the silence was made.
    execute(
        dsn,
        "CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'commit refused' USING ERRCODE = '40001'; END $$",
    )
    execute(
        dsn,
        "CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON maintenance_windows "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit()",
    )
    starts = datetime.now(UTC) + timedelta(hours=5)
    reason = f"compensation {uuid.uuid4().hex}"
    resp = await mapi.post(
        URL,
        json=_body(["monitoring"], starts, starts + timedelta(hours=1), reason),
        headers=as_user("admin"),
    )
    assert resp.status == 503
    assert rows(dsn, "SELECT count(*) FROM maintenance_windows") == [(0,)]
    mine = [s for s in am_get(f"{alertmanager}/api/v2/silences") if reason in s["comment"]]
    assert [s["status"]["state"] for s in mine] == ["expired"]
    metrics = await (await mapi.get("/metrics")).text()
    assert 'api_alertmanager_compensations_total{result="undone"} 1.0' in metrics


async def test_alertmanager_down_writes_nothing(
    seeded: tuple[str, Any], aiohttp_client: Any, tmp_path: Path
) -> None:
    dsn, _ = seeded
    from compose.processes import free_port

    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn},
        alertmanager_url=f"http://127.0.0.1:{free_port()}",
        alertmanager_timeout="1s",
    )
    api = await start_client(aiohttp_client, cfg, secrets)
    starts = datetime.now(UTC) + timedelta(hours=1)
    resp = await api.post(
        URL, json=_body(["vercel"], starts, starts + timedelta(hours=1)), headers=as_user("admin")
    )
    assert resp.status == 503
    assert (await resp.json())["error"] == "alertmanager_unavailable"
    assert rows(dsn, "SELECT count(*) FROM maintenance_windows") == [(0,)]
    assert rows(dsn, "SELECT count(*) FROM infrastructure_audit_log") == [(0,)]


def _windows_file(path: Path, windows: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"windows": windows}))
    return path


async def test_the_windows_file_is_synced_idempotently(
    seeded: tuple[str, Any], alertmanager: str, aiohttp_client: Any, tmp_path: Path
) -> None:
    dsn, _ = seeded
    t0 = _next_month(days=5)
    past = datetime.now(UTC) - timedelta(days=40)
    entry = {
        "services": ["database"],
        "starts_at": _iso(t0),
        "ends_at": _iso(t0 + timedelta(hours=2)),
        "reason": "Supabase Postgres 16 upgrade",
    }
    old = {**entry, "starts_at": _iso(past), "ends_at": _iso(past + timedelta(hours=1))}
    file = _windows_file(tmp_path / "maintenance.yaml", [entry, old])
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn},
        alertmanager_url=alertmanager,
        **_maintenance_config(tmp_path, windows_file=str(file), machine="planner"),
    )
    api = await start_client(aiohttp_client, cfg, secrets)
    # Synced at start (in the background).
    deadline = time.monotonic() + 10
    while not rows(dsn, "SELECT 1 FROM maintenance_windows"):
        assert time.monotonic() < deadline, "the windows file was never synced"
        await asyncio.sleep(0.05)
    services = api.app[SERVICES]
    m = api.app[MAINTENANCE]
    async with m.lock:  # the background sync may be running: take turns, as it does
        assert await sync_config(services, m) is True
        assert await sync_config(services, m) is True

    found = rows(
        dsn, "SELECT id, source, created_by, silence_id, ended_at FROM maintenance_windows"
    )
    assert len(found) == 1  # the past entry is history, not a window to make
    window_id, source, by, silence_id, ended = found[0]
    assert (source, by, ended) == ("config", ADMIN_MACHINE, None)
    assert [s["id"] for s in _silences_of(alertmanager, str(window_id))] == [silence_id]
    assert _silence(alertmanager, silence_id)["createdBy"] == "machine:planner"
    audit = rows(dsn, "SELECT action, actor_kind, actor_machine FROM infrastructure_audit_log")
    assert audit == [("maintenance.create", "machine", "planner")]
    metrics = await (await api.get("/metrics")).text()
    assert "api_maintenance_config_sync_ok 1.0" in metrics

    # Gone from the file: the window is ended and its silence expired.
    _windows_file(file, [])
    async with m.lock:
        assert await sync_config(services, m) is True
    assert rows(dsn, "SELECT ended_by FROM maintenance_windows") == [(ADMIN_MACHINE,)]
    assert _silence(alertmanager, silence_id)["status"]["state"] == "expired"

    # A bad edit while running is logged and refused; the last good content stays in force.
    file.write_text("windows: [{services: [nosuch]}]\n")
    async with m.lock:
        assert await sync_config(services, m) is False


def test_a_bad_windows_file_fails_the_config_naming_file_and_entry(tmp_path: Path) -> None:
    t0 = _next_month()
    file = _windows_file(
        tmp_path / "maintenance.yaml",
        [
            {
                "services": ["vercel"],
                "starts_at": _iso(t0),
                "ends_at": _iso(t0 + timedelta(hours=1)),
                "reason": "a",
            },
            {
                "services": ["vercel"],
                "starts_at": _iso(t0),
                "ends_at": _iso(t0 + timedelta(hours=9)),
                "reason": "b",
            },
        ],
    )
    with pytest.raises(ConfigError) as err:
        write_config(
            tmp_path, **_maintenance_config(tmp_path, windows_file=str(file), machine="planner")
        )
    text = str(err.value)
    assert str(file) in text
    assert "windows[1]: lasts 9 h, longer than maintenance.max_window" in text
    assert "windows[1]: overlaps windows[0] for vercel" in text
    assert "vercel has 10 h of maintenance" in text
    assert "monthly_budget" in text
    # The file's windows are written as an admin machine, so one must be named.
    _windows_file(file, [])
    with pytest.raises(ConfigError, match=r"maintenance\.machine"):
        write_config(
            tmp_path, **_maintenance_config(tmp_path, windows_file=str(file), machine="grafana")
        )


def test_the_example_windows_file_is_valid() -> None:
    settings = MaintenanceSettings.model_validate(
        {
            "windows_file": str(ROOT / "config" / "example" / "maintenance.yaml"),
            "machine": "planner",
            "monthly_budget": "4h",
        }
    )
    assert len(settings.read_windows()) == 2


async def test_the_metric_works_under_the_documented_noinherit_login_role(
    seeded: tuple[str, Any],
    login_role: str,  # noqa: F811 - the fixture imported above
    alertmanager: str,
    aiohttp_client: Any,
    tmp_path: Path,
    unique: str,
) -> None:
    dsn, _ = seeded
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn.replace("user=postgres", f"user={login_role}")},
        alertmanager_url=alertmanager,
        maintenance={"services": ["vercel", unique]},
    )
    api = await start_client(aiohttp_client, cfg, secrets)
    now = datetime.now(UTC)
    resp = await api.post(
        URL, json=_body([unique], now, now + timedelta(minutes=30)), headers=as_user("admin")
    )
    assert resp.status == 201, await resp.text()
    metrics = await (await api.get("/metrics")).text()
    assert f'api_maintenance_window_active{{service="{unique}"}} 1.0' in metrics
    ended = await api.delete(f"{URL}/{(await resp.json())['id']}", headers=as_user("admin"))
    assert ended.status == 200
