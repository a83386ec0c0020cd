"""Who sees and does what, per caller, against a real PostgreSQL and Alertmanager: the spec's
row-level security policies decide (a refused reader gets empty lists, a refused writer 403),
and every kind of bad credential is a 401 with its reason."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.api.conftest import (
    MACHINE,
    MACHINE_TOKEN,
    NO_PROFILE,
    USERS,
    as_user,
    bearer,
    execute,
    rows,
    start_client,
    token,
    write_config,
)
from tests.conftest import PG_ADMIN

pytestmark = pytest.mark.integration

ALL_ALERTS = {
    "active": [("SeedWarning", "warning"), ("SeedCritical", "critical")],
    "summary": {"critical": 1, "error": 0, "warning": 1, "info": 0},
    "resolutions": ["SeedRecent"],
}
NO_ALERTS: dict[str, Any] = {
    "active": [],
    "summary": {"critical": 0, "error": 0, "warning": 0, "info": 0},
    "resolutions": [],
}
EVERY_DEPLOYMENT = ["vercel:dpl_0", "vercel:dpl_1", "vercel:dpl_2"]

CALLERS = {
    "admin": as_user("admin"),
    "developer": as_user("developer"),
    "ops": as_user("ops"),
    "finance": as_user("finance"),
    "no_profile": bearer(token(NO_PROFILE)),
    "machine": bearer(MACHINE_TOKEN),
}


def _alerts(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "active": [(a["alert_type"], a["severity"]) for a in doc["active_alerts"]],
        "summary": doc["alert_summary"],
        "resolutions": [r["alert_type"] for r in doc["recent_resolutions"]],
    }


@pytest.mark.parametrize(
    ("who", "alerts", "deployments"),
    [
        ("admin", ALL_ALERTS, EVERY_DEPLOYMENT),
        ("developer", ALL_ALERTS, EVERY_DEPLOYMENT),
        # ops reads alerts, and deployments only as a user: its own.
        ("ops", ALL_ALERTS, ["vercel:dpl_1"]),
        # Finance is not in the alerts policy: empty lists, not a 403.
        ("finance", NO_ALERTS, []),
        ("no_profile", NO_ALERTS, ["vercel:dpl_2"]),
        # The machine token acts as its configured user with role ops (no deployments of its own).
        ("machine", ALL_ALERTS, []),
    ],
)
async def test_what_each_caller_reads_is_what_the_policies_show(
    api: TestClient, who: str, alerts: dict[str, Any], deployments: list[str]
) -> None:
    resp = await api.get("/api/infrastructure/alerts", headers=CALLERS[who])
    assert resp.status == 200
    assert _alerts(await resp.json()) == alerts
    resp = await api.get("/api/infrastructure/deployments", headers=CALLERS[who])
    assert resp.status == 200
    assert [d["deployment_id"] for d in (await resp.json())["deployments"]] == deployments


async def test_the_alerts_response_has_the_spec_shape(api: TestClient) -> None:
    doc = await (await api.get("/api/infrastructure/alerts", headers=CALLERS["ops"])).json()
    warning, critical = doc["active_alerts"]
    assert set(critical) == {
        "id",
        "alert_type",
        "severity",
        "service_name",
        "alert_title",
        "current_metric_value",
        "triggered_at",
        "duration_minutes",
    }
    assert critical["current_metric_value"] == 12.5
    assert "current_metric_value" not in warning  # optional in the spec: absent, not null
    assert critical["duration_minutes"] == 60
    assert warning["duration_minutes"] == 30
    assert critical["triggered_at"].endswith("Z")
    (recent,) = doc["recent_resolutions"]
    assert recent["resolution_time_minutes"] == 120
    assert set(recent) == {"alert_type", "resolution_time_minutes", "resolved_at"}


async def test_deployments_filter_and_limit_are_validated(api: TestClient) -> None:
    admin = CALLERS["admin"]
    url = "/api/infrastructure/deployments"
    doc = await (await api.get(url, params={"environment": "preview"}, headers=admin)).json()
    assert [d["deployment_id"] for d in doc["deployments"]] == ["vercel:dpl_1"]
    assert set(doc["deployments"][0]) >= {"deployed_by", "deployment_status", "deployed_at"}
    doc = await (await api.get(url, params={"limit": "2"}, headers=admin)).json()
    assert [d["deployment_id"] for d in doc["deployments"]] == ["vercel:dpl_0", "vercel:dpl_1"]
    for params in (
        {"environment": "prod"},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "x"},
        {"limit": "9" * 5000},
        {"sort": "asc"},
    ):
        resp = await api.get(url, params=params, headers=admin)
        assert resp.status == 422, params
        assert (await resp.json())["error"] == "invalid_request"
    resp = await api.get(f"{url}?limit=1&limit=2", headers=admin)
    assert resp.status == 422


NEW_ALERT = {
    "alert_type": "CheckoutBroken",
    "severity": "warning",
    "service_name": "web",
    "alert_title": "Checkout fails for EU cards",
    "alert_description": "Support reports card payments failing since 10:00.",
}


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("admin", 202),
        ("developer", 202),
        ("ops", 202),
        ("machine", 202),
        ("finance", 403),
        ("no_profile", 403),
    ],
)
async def test_who_may_open_an_incident_is_the_alerts_policys_answer(
    api: TestClient, seeded: tuple[str, Any], who: str, status: int
) -> None:
    dsn, _ = seeded
    resp = await api.post("/api/infrastructure/alerts", json=NEW_ALERT, headers=CALLERS[who])
    assert resp.status == status
    audit = rows(dsn, "SELECT action, actor_kind, actor_machine FROM infrastructure_audit_log")
    if status == 403:
        assert await resp.json() == {
            "error": "forbidden",
            "reason": "row-level security does not let you create alerts",
        }
        assert audit == []
    else:
        machine = "grafana" if who == "machine" else None
        assert audit == [("alert.create", "machine" if machine else "jwt", machine)]
    # The probe the policy judged was rolled back: no row was written by the API itself.
    assert rows(
        dsn, "SELECT count(*) FROM infrastructure_alerts WHERE alert_type = 'wsinfra-api-probe'"
    ) == [(0,)]


@pytest.mark.parametrize(
    ("who", "existing", "status", "error"),
    [
        ("finance", True, 403, "forbidden"),
        # Not admitted: the same answer whether or not the id exists (nothing leaks).
        ("finance", False, 403, "forbidden"),
        ("no_profile", True, 403, "forbidden"),
        ("admin", False, 404, "not_found"),
    ],
)
async def test_a_write_the_policies_refuse_is_403_and_writes_nothing(
    api: TestClient, seeded: tuple[str, Any], who: str, existing: bool, status: int, error: str
) -> None:
    dsn, ids = seeded
    target = ids["critical"] if existing else uuid.uuid4()
    for action in ("acknowledge", "resolve"):
        resp = await api.put(
            "/api/infrastructure/alerts",
            json={"id": str(target), "action": action, "notes": "mine"},
            headers=CALLERS[who],
        )
        assert resp.status == status
        assert (await resp.json())["error"] == error
    assert rows(dsn, "SELECT count(*) FROM infrastructure_audit_log") == [(0,)]
    assert rows(
        dsn,
        "SELECT acknowledged_by, resolved_by, resolution_notes FROM infrastructure_alerts WHERE id = %s",
        ids["critical"],
    ) == [(None, None, None)]


async def test_a_row_not_from_alertmanager_resolves_at_once_with_notes_and_audit(
    api: TestClient, seeded: tuple[str, Any]
) -> None:
    dsn, ids = seeded
    resp = await api.put(
        "/api/infrastructure/alerts",
        json={"id": str(ids["warning"]), "action": "resolve", "notes": "disk cleaned"},
        headers=CALLERS["developer"],
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["state"] == "resolved"
    assert body["resolved_by"] == str(USERS["developer"])
    assert body["resolution_notes"] == "disk cleaned"
    resp = await api.put(
        "/api/infrastructure/alerts",
        json={"id": str(ids["warning"]), "action": "acknowledge"},
        headers=CALLERS["developer"],
    )
    assert resp.status == 409
    assert (await resp.json())["error"] == "already_resolved"
    (audit,) = rows(dsn, "SELECT action, before, after FROM infrastructure_audit_log")
    assert audit[0] == "alert.resolve"
    assert audit[1]["resolved_at"] is None
    assert audit[1]["resolved_by"] is None
    assert audit[2]["resolved_by"] == str(USERS["developer"])
    assert audit[2]["resolution_notes"] == "disk cleaned"


async def test_machine_users_are_set_up_with_their_role(
    api: TestClient, seeded: tuple[str, Any]
) -> None:
    dsn, _ = seeded
    assert rows(dsn, "SELECT role FROM user_profiles WHERE user_id = %s", MACHINE) == [("ops",)]


# --- asymmetric keys from a JWKS, served on loopback -------------------------------------------


@pytest.fixture
async def jwks_server(aiohttp_server: Any) -> Any:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = []
    for kid, key, alg in (("rsa-1", rsa_key, "RS256"), ("ec-1", ec_key, "ES256")):
        jwk = jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key(), as_dict=True)
        keys.append({**jwk, "kid": kid, "use": "sig", "alg": alg})
    fetched = []

    async def serve(_: web.Request) -> web.Response:
        fetched.append(1)
        return web.json_response({"keys": keys})

    app = web.Application()
    app.router.add_get("/auth/v1/.well-known/jwks.json", serve)
    server: TestServer = await aiohttp_server(app)
    server.rsa_key = rsa_key  # type: ignore[attr-defined]
    server.ec_key = ec_key  # type: ignore[attr-defined]
    server.fetched = fetched  # type: ignore[attr-defined]
    return server


async def test_rs256_and_es256_tokens_verify_against_the_projects_jwks(
    seeded: tuple[str, Any], jwks_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    dsn, _ = seeded
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn},
        auth={
            "jwks_url": str(jwks_server.make_url("/auth/v1/.well-known/jwks.json")),
            # The throttle of refetches has its own test (test_auth.py); here every unknown
            # kid may fetch.
            "jwks_min_refetch_interval": "1ms",
        },
    )
    api = await start_client(aiohttp_client, cfg, secrets)
    admin = USERS["admin"]
    for key, alg, kid in (
        (jwks_server.rsa_key, "RS256", "rsa-1"),
        (jwks_server.ec_key, "ES256", "ec-1"),
    ):
        resp = await api.get(
            "/api/infrastructure/deployments",
            headers=bearer(token(admin, key=key, algorithm=alg, headers={"kid": kid})),
        )
        assert resp.status == 200, await resp.text()
        assert len((await resp.json())["deployments"]) == 3
    # A key the JWKS does not hold, and an RSA token claiming the EC key.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for headers, error in (
        (
            bearer(token(admin, key=other, algorithm="RS256", headers={"kid": "rsa-1"})),
            "bad_signature",
        ),
        (
            bearer(token(admin, key=other, algorithm="RS256", headers={"kid": "rsa-9"})),
            "unknown_key",
        ),
        (
            bearer(
                token(admin, key=jwks_server.rsa_key, algorithm="RS256", headers={"kid": "ec-1"})
            ),
            "unsupported_algorithm",
        ),
    ):
        resp = await api.get("/api/infrastructure/deployments", headers=headers)
        assert resp.status == 401
        assert (await resp.json())["error"] == error
    # One fetch at first use, one for the unknown kid; the rest came from the cache.
    assert len(jwks_server.fetched) == 2


# --- the API's own login role: only the grants docs/operator-api.md lists ----------------------

LOGIN_GRANTS = """
GRANT authenticated TO {role};
GRANT USAGE ON SCHEMA auth TO {role};
GRANT INSERT, SELECT (id) ON auth.users TO {role};
GRANT SELECT, INSERT, UPDATE ON public.user_profiles TO {role};
CREATE POLICY "wsinfra api sets up machine users" ON public.user_profiles
    FOR ALL TO {role} USING (true) WITH CHECK (true);
"""


@pytest.fixture
def login_role(seeded: tuple[str, Any]) -> Iterator[str]:
    """A NOINHERIT login role with exactly the documented grants (roles are cluster-wide: it
    is dropped again, with what it was granted)."""
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


async def test_the_documented_grants_are_all_the_login_role_needs(
    seeded: tuple[str, Any], login_role: str, alertmanager: str, aiohttp_client: Any, tmp_path: Path
) -> None:
    dsn, ids = seeded
    cfg, secrets, _ = write_config(
        tmp_path,
        database={"conninfo": dsn.replace("user=postgres", f"user={login_role}")},
        alertmanager_url=alertmanager,
    )
    api = await start_client(aiohttp_client, cfg, secrets)  # machine users set up as the role
    assert rows(dsn, "SELECT role FROM user_profiles WHERE user_id = %s", MACHINE) == [("ops",)]
    resp = await api.get("/api/infrastructure/alerts", headers=CALLERS["machine"])
    assert len((await resp.json())["active_alerts"]) == 2
    resp = await api.post("/api/infrastructure/alerts", json=NEW_ALERT, headers=CALLERS["ops"])
    assert resp.status == 202
    resp = await api.put(
        "/api/infrastructure/alerts",
        json={"id": str(ids["warning"]), "action": "resolve", "notes": "done"},
        headers=CALLERS["ops"],
    )
    assert resp.status == 200
    resp = await api.post("/api/infrastructure/alerts", json=NEW_ALERT, headers=CALLERS["finance"])
    assert resp.status == 403
    # As itself, the role reads nothing of the spec's tables: only as `authenticated`.
    with (
        psycopg.connect(dsn.replace("user=postgres", f"user={login_role}")) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT count(*) FROM infrastructure_alerts")


async def test_a_login_role_that_cannot_become_authenticated_is_503_not_403(
    seeded: tuple[str, Any], aiohttp_client: Any, tmp_path: Path
) -> None:
    dsn, _ = seeded
    role = f"wsinfra_api_{uuid.uuid4().hex[:8]}"
    execute(PG_ADMIN, f"CREATE ROLE {role} LOGIN NOINHERIT")
    try:
        cfg, secrets, _ = write_config(
            tmp_path,
            database={"conninfo": dsn.replace("user=postgres", f"user={role}")},
            machine_tokens=[],
        )
        api = await start_client(aiohttp_client, cfg, secrets)
        resp = await api.get("/api/infrastructure/alerts", headers=CALLERS["admin"])
        assert resp.status == 503
        assert (await resp.json())["error"] == "db_unavailable"
    finally:
        execute(PG_ADMIN, f"DROP ROLE {role}")
