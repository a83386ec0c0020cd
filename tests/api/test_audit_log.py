"""Migration 0008's audit log under row-level security, as the API's callers meet it: anyone
signed in may append a row in their own name only, only admins read it, nobody rewrites it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from tests.api.conftest import USERS

pytestmark = pytest.mark.integration

INSERT = (
    "INSERT INTO infrastructure_audit_log (actor_user_id, actor_kind, action, target_table)"
    " VALUES (%s, 'jwt', 'alert.acknowledge', 'infrastructure_alerts')"
)


def _as(conn: psycopg.Connection[Any], who: uuid.UUID) -> None:
    conn.execute("SET LOCAL ROLE authenticated")
    conn.execute(
        "SELECT set_config('request.jwt.claims', %s, true)",
        (json.dumps({"sub": str(who), "role": "authenticated"}),),
    )


def _try(dsn: str, who: uuid.UUID, sql: str, *args: Any) -> list[tuple[Any, ...]] | str:
    """Run `sql` as `who`; its rows (committed), or the SQLSTATE class name it failed with."""
    with psycopg.connect(dsn) as conn:
        try:
            with conn.transaction():
                _as(conn, who)
                cur = conn.execute(sql, args)  # type: ignore[arg-type]
                return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            return type(exc).__name__


async def test_callers_append_in_their_own_name_and_only_admins_read(
    seeded: tuple[str, Any],
) -> None:
    dsn, _ = seeded
    ops, finance, admin = USERS["ops"], USERS["finance"], USERS["admin"]
    assert _try(dsn, ops, INSERT, ops) == []
    assert _try(dsn, finance, INSERT, finance) == []  # the target's policy judges the write itself
    assert _try(dsn, ops, INSERT, admin) == "InsufficientPrivilege"  # never in another's name
    read = "SELECT actor_user_id FROM infrastructure_audit_log ORDER BY occurred_at"
    assert _try(dsn, ops, read) == []
    assert _try(dsn, finance, read) == []
    assert _try(dsn, admin, read) == [(ops,), (finance,)]
    for rewrite in (
        "UPDATE infrastructure_audit_log SET action = 'nothing'",
        "DELETE FROM infrastructure_audit_log",
    ):
        assert _try(dsn, admin, rewrite) == "InsufficientPrivilege"
    # A machine row must name its machine, a person's must not.
    machine_without_name = (
        "INSERT INTO infrastructure_audit_log (actor_user_id, actor_kind, action, target_table)"
        " VALUES (%s, 'machine', 'alert.create', 'infrastructure_alerts')"
    )
    assert _try(dsn, ops, machine_without_name, ops) == "CheckViolation"


async def test_the_migration_is_recorded_and_its_policies_exist(seeded: tuple[str, Any]) -> None:
    dsn, _ = seeded
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT name FROM schema_migrations WHERE version = 8").fetchall() == [
            ("infrastructure_audit_log",)
        ]
        policies = conn.execute(
            "SELECT policyname, cmd FROM pg_policies WHERE tablename = 'infrastructure_audit_log'"
            " ORDER BY policyname"
        ).fetchall()
    assert policies == [
        ("Admins read the audit log", "SELECT"),
        ("Callers append their own audit rows", "INSERT"),
        # Migration 0010: the escalation loop's own rows (actor_kind 'system').
        ("Escalation appends its own audit rows", "INSERT"),
        # Migration 0012: the reconciliation loop's.
        ("Reconciler appends its own audit rows", "INSERT"),
    ]
