"""The operator API tests' callers, tokens, config, seeded database and a real Alertmanager."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from aiohttp.test_utils import TestClient

from api.app import make_app
from api.config import ApiConfig, Secrets
from compose.processes import alertmanager_argv, free_port, spawn, stop, wait_ready
from recorder.payloads import parse_alertmanager
from schema import writes
from tests.conftest import binary

SECRET = "a-test-project-jwt-secret-of-more-than-32-bytes"
ISSUER = "https://testproject.supabase.co/auth/v1"
AUDIENCE = "authenticated"

USERS = {
    "admin": uuid.UUID("00000000-0000-4000-8000-00000000000a"),
    "developer": uuid.UUID("00000000-0000-4000-8000-00000000000d"),
    "ops": uuid.UUID("00000000-0000-4000-8000-00000000000e"),
    "finance": uuid.UUID("00000000-0000-4000-8000-00000000000f"),
}
# Signed in (in auth.users) but without a profile: the policies admit them to nothing but
# their own deployments.
NO_PROFILE = uuid.UUID("00000000-0000-4000-8000-000000000011")
MACHINE = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
MACHINE_TOKEN = "grafana-machine-token-0123456789abcdef0123456789"


def token(
    sub: uuid.UUID | str,
    *,
    key: str | bytes | Any = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A Supabase-shaped session JWT; keyword arguments override or add claims (None drops)."""
    now = datetime.now(UTC)
    payload: dict[str, Any] = {
        "sub": str(sub),
        "role": "authenticated",
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        "exp": now + timedelta(hours=1),
        "email": f"{sub}@example.com",
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def as_user(role: str) -> dict[str, str]:
    return bearer(token(USERS[role], email=f"{role}@example.com"))


# The PagerDuty webhook's machine user (its own machine_tokens entry, role ops) and secret.
PAGERDUTY_MACHINE = uuid.UUID("00000000-0000-4000-8000-0000000000c2")
PAGERDUTY_TOKEN = "pagerduty-machine-token-0123456789abcdef012345"
PAGERDUTY_SECRET = "pagerduty-webhook-secret-0123456789abcdef"


def pagerduty_config(tmp_path: Path, **pagerduty: Any) -> dict[str, Any]:
    """write_config overrides that add PagerDuty webhooks (keyword arguments go into the
    pagerduty section): a second machine, `pagerduty`, acting for PagerDuty."""
    (tmp_path / "pagerduty_token").write_text(PAGERDUTY_TOKEN + "\n")
    (tmp_path / "pagerduty_secret").write_text(PAGERDUTY_SECRET + "\n")
    return {
        "machine_tokens": [
            {
                "name": "grafana",
                "token_file": str(tmp_path / "machine_token"),
                "role": "ops",
                "user_id": str(MACHINE),
            },
            {
                "name": "pagerduty",
                "token_file": str(tmp_path / "pagerduty_token"),
                "role": "ops",
                "user_id": str(PAGERDUTY_MACHINE),
            },
        ],
        "pagerduty": {
            "webhook_secret_file": str(tmp_path / "pagerduty_secret"),
            "machine": "pagerduty",
            **pagerduty,
        },
    }


def write_config(tmp_path: Path, **overrides: Any) -> tuple[ApiConfig, Secrets, Path]:
    """The API's config as a file (secrets in files beside it), loaded as the CLI loads it."""
    import yaml

    from common.config import load_config

    (tmp_path / "jwt_secret").write_text(SECRET + "\n")
    (tmp_path / "machine_token").write_text(MACHINE_TOKEN + "\n")
    doc: dict[str, Any] = {
        "database": {"conninfo": "host=127.0.0.1 dbname=unused user=postgres"},
        "auth": {"jwt_secret_file": str(tmp_path / "jwt_secret"), "issuer": ISSUER},
        "machine_tokens": [
            {
                "name": "grafana",
                "token_file": str(tmp_path / "machine_token"),
                "role": "ops",
                "user_id": str(MACHINE),
            }
        ],
        "alertmanager_url": "http://127.0.0.1:9",
        # No background escalation loop in tests that do not ask for one: it would escalate the
        # seeded critical behind their back (tests/api/test_escalation.py ticks it directly).
        "escalation": {"enabled": False},
        # Nor reconciliation (tests/api/test_reconcile.py ticks it directly).
        "reconcile": {"enabled": False},
        "ack_ttl": "10m",
        "max_body_bytes": 4096,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    path = tmp_path / "api.yaml"
    path.write_text(yaml.safe_dump(doc))
    cfg = load_config(path, ApiConfig)
    return cfg, Secrets.read(cfg, path), path


# --- a real Alertmanager, one for the whole session (tests use labels nobody else uses) -------

AM_CONFIG = """
route:
  receiver: blackhole
  group_wait: 0s
receivers:
  - name: blackhole
"""


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary("prometheus-alertmanager", "alertmanager")
    home = tmp_path_factory.mktemp("alertmanager")
    (home / "am.yml").write_text(AM_CONFIG)
    port = free_port()
    proc = spawn(alertmanager_argv(home / "am.yml", port, home / "data"), home / "am.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def am_get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
        return json.load(resp)


def am_post_alert(am: str, labels: dict[str, str], **extra: Any) -> None:
    alert = {"labels": labels, "annotations": {"summary": labels["alertname"]}, **extra}
    req = urllib.request.Request(  # noqa: S310 - loopback
        f"{am}/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=5).close()  # noqa: S310 - loopback


def am_alert(am: str, labels: dict[str, str], timeout: float = 5.0) -> dict[str, Any] | None:
    """Alertmanager's unresolved alert with exactly these labels (waits for it to appear)."""
    deadline = time.monotonic() + timeout
    while True:
        for a in am_get(f"{am}/api/v2/alerts"):
            if a["labels"] == labels:
                return dict(a)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


async def record(dsn: str, am: str, labels: dict[str, str]) -> uuid.UUID:
    """What the recorder does when Alertmanager notifies it of this alert: the notification is
    built from Alertmanager's own view (fingerprint, startsAt, annotations) and stored through
    the recorder's parser and schema.writes. Returns the row's id."""
    alert = am_alert(am, labels)
    assert alert is not None, f"Alertmanager has no alert {labels}"
    payload = {
        "version": "4",
        "receiver": "recorder",
        "groupKey": "{}:{}",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": alert["labels"],
                "annotations": alert["annotations"],
                "startsAt": alert["startsAt"],
                "endsAt": alert["endsAt"],
                "generatorURL": alert.get("generatorURL", ""),
                "fingerprint": alert["fingerprint"],
            }
        ],
    }
    notification = parse_alertmanager(json.dumps(payload).encode())
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await writes.upsert_alerts(conn, notification.alerts)
        await conn.commit()
        cur = await conn.execute(
            "SELECT id FROM infrastructure_alerts WHERE alert_id = %s",
            (notification.alerts[0].alert_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def unique_labels(**extra: str) -> dict[str, str]:
    """A rule alert's labels, unique to the calling test."""
    return {
        "alertname": "UptimeTargetDown",
        "severity": "critical",
        "service": "web",
        "target": f"web-{uuid.uuid4().hex[:8]}",
        **extra,
    }


# --- the seeded database ------------------------------------------------------------------


def seed(dsn: str) -> dict[str, uuid.UUID]:
    """Users with each role, one without a profile; alerts (two active, one resolved an hour
    ago, one two days ago) and three deployments (by developer, by ops, by the profile-less
    user). Written as the superuser, as the recorder (the table owner's side) would."""
    ids: dict[str, uuid.UUID] = {}
    with psycopg.connect(dsn) as conn:
        for role, uid in USERS.items():
            conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (uid, role))
            conn.execute("INSERT INTO user_profiles (user_id, role) VALUES (%s, %s)", (uid, role))
        conn.execute("INSERT INTO auth.users (id) VALUES (%s)", (NO_PROFILE,))
        for name, severity, triggered, resolved, value in (
            ("critical", "critical", "1 hour", None, 12.5),
            ("warning", "warning", "30 minutes", None, None),
            ("recent", "error", "3 hours", "1 hour", None),
            ("old", "error", "3 days", "2 days", None),
        ):
            row = conn.execute(
                "INSERT INTO infrastructure_alerts (alert_id, alert_type, severity, service_name,"
                " alert_title, alert_description, current_metric_value, triggered_at, resolved_at,"
                " alert_rule) VALUES (%s, %s, %s, 'web', %s, 'd', %s, now() - %s::interval,"
                " now() - %s::interval, NULL) RETURNING id",
                (
                    f"seed:{name}",
                    f"Seed{name.title()}",
                    severity,
                    f"title {name}",
                    value,
                    triggered,
                    resolved,
                ),
            ).fetchone()
            assert row is not None
            ids[name] = row[0]
        for n, by in enumerate((USERS["developer"], USERS["ops"], NO_PROFILE)):
            conn.execute(
                "INSERT INTO deployment_history (deployment_id, environment, git_branch,"
                " git_commit_hash, deployed_by, deployment_status, deployed_at) VALUES"
                " (%s, %s, 'main', 'abc123', %s, 'success', now() - %s * INTERVAL '1 hour')",
                (f"vercel:dpl_{n}", ("production", "preview", "staging")[n], by, n),
            )
    return ids


@pytest.fixture
async def seeded(migrated_dsn: str) -> tuple[str, dict[str, uuid.UUID]]:
    return migrated_dsn, seed(migrated_dsn)


async def start_client(aiohttp_client: Any, cfg: ApiConfig, secrets: Secrets) -> TestClient:
    client: TestClient = await aiohttp_client(make_app(cfg, secrets))
    # Machine users are set up in the background at start; wait for the API to be ready.
    deadline = time.monotonic() + 10
    while (await client.get("/-/ready")).status != 200:
        assert time.monotonic() < deadline, "the API never became ready"
        await asyncio.sleep(0.05)
    return client


@pytest.fixture
async def api(
    seeded: tuple[str, dict[str, uuid.UUID]],
    alertmanager: str,
    aiohttp_client: Any,
    tmp_path: Path,
) -> TestClient:
    dsn, _ = seeded
    cfg, secrets, _ = write_config(
        tmp_path, database={"conninfo": dsn}, alertmanager_url=alertmanager
    )
    return await start_client(aiohttp_client, cfg, secrets)


def rows(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


def execute(dsn: str, sql: str, *args: Any) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(sql, args)  # type: ignore[arg-type]
