"""Migrations on a real PostgreSQL, and the spec's row-level security proven with real roles."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import psycopg
import pytest

from schema import migrate

pytestmark = pytest.mark.integration

SPEC_TABLES = {
    "infrastructure_metrics",
    "deployment_history",
    "infrastructure_alerts",
    "cost_tracking",
    "backup_status",
    "scaling_events",
}


async def test_fresh_apply_then_rerun_is_a_no_op(pg_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        assert await migrate.apply(conn) == list(range(1, migrate.head() + 1))
        assert await migrate.apply(conn) == []
        assert await migrate.current(conn) == migrate.head()
        cur = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert {r[0] for r in await cur.fetchall()} >= SPEC_TABLES
        cur = await conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN "
            "('idx_alerts_active', 'idx_alerts_service_unresolved', 'idx_backups_expiring', 'idx_deployments_env_time')"
        )
        defs = dict(await cur.fetchall())
        assert len(defs) == 4
        assert "WHERE (resolved_at IS NULL)" in defs["idx_alerts_active"]
        assert "WHERE ((backup_status)::text = 'completed'::text)" in defs["idx_backups_expiring"]
        cur = await conn.execute(
            "SELECT relname FROM pg_class WHERE relrowsecurity AND relname = ANY(%s)",
            (list(SPEC_TABLES),),
        )
        assert {r[0] for r in await cur.fetchall()} == SPEC_TABLES


async def test_backup_expiry_is_generated(migrated_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(migrated_dsn) as conn:
        cur = await conn.execute(
            "INSERT INTO backup_status (backup_type, backup_target, backup_method, backup_location, completed_at, backup_retention_days) "
            "VALUES ('database', 'db', 'supabase_automated', 's3://x', '2026-01-01T00:00:00Z', 7) RETURNING expires_at"
        )
        row = await cur.fetchone()
        assert row is not None
        assert row[0].isoformat().startswith("2026-01-08T00:00:00")


async def test_concurrent_migrators_serialize_on_the_lock(pg_dsn: str) -> None:
    async def run() -> list[int]:
        async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
            return await migrate.apply(conn)

    results = await asyncio.gather(run(), run(), run())
    assert sorted(results, key=len) == [[], [], list(range(1, migrate.head() + 1))]


async def test_an_edited_applied_migration_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    for m in migrate.available():
        (tmp_path / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        await migrate.apply(conn, tmp_path)
        (tmp_path / "0004_recorder_log.sql").write_text(
            migrate.available()[3].sql + "\n-- edited\n"
        )
        with pytest.raises(migrate.MigrationError, match="was changed after it was applied"):
            await migrate.apply(conn, tmp_path)


async def test_existing_supabase_auth_objects_are_left_alone(pg_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        # As on Supabase: auth schema, users table and functions already there, with their own bodies.
        await conn.execute("CREATE SCHEMA auth")
        await conn.execute(
            "CREATE TABLE auth.users (id UUID PRIMARY KEY, instance_id UUID, aud VARCHAR(255))"
        )
        await conn.execute(
            "CREATE FUNCTION auth.uid() RETURNS UUID LANGUAGE sql STABLE AS $$ SELECT '00000000-0000-0000-0000-000000000001'::uuid $$"
        )
        await conn.execute(
            "CREATE FUNCTION auth.jwt() RETURNS JSONB LANGUAGE sql STABLE AS $$ SELECT '{\"supabase\": true}'::jsonb $$"
        )
        await migrate.apply(conn)
        cur = await conn.execute("SELECT auth.uid(), auth.jwt()")
        assert await cur.fetchone() == (
            uuid.UUID("00000000-0000-0000-0000-000000000001"),
            {"supabase": True},
        )
        cur = await conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'auth' AND table_name = 'users'"
        )
        assert {r[0] for r in await cur.fetchall()} == {"id", "instance_id", "aud"}


USERS = {
    "admin": uuid.UUID(int=1),
    "developer": uuid.UUID(int=2),
    "finance": uuid.UUID(int=3),
    "ops": uuid.UUID(int=4),
}


def _seed(conn: psycopg.Connection[object]) -> None:
    for role, uid in USERS.items():
        conn.execute("INSERT INTO auth.users (id) VALUES (%s)", (uid,))
        conn.execute("INSERT INTO user_profiles (user_id, role) VALUES (%s, %s)", (uid, role))
    conn.execute(
        "INSERT INTO cost_tracking (service_provider, service_category, billing_period_start, billing_period_end, usage_quantity, usage_unit, cost_usd) "
        "VALUES ('vercel', 'compute', '2026-11-01', '2026-11-30', 10, 'gb_hours', 42)"
    )
    conn.execute(
        "INSERT INTO backup_status (backup_type, backup_target, backup_method, backup_location) VALUES ('database', 'db', 'supabase_automated', 's3://x')"
    )
    conn.execute(
        "INSERT INTO deployment_history (deployment_id, environment, git_branch, git_commit_hash) VALUES ('vercel:dpl_1', 'production', 'main', 'abc')"
    )
    conn.execute(
        "INSERT INTO infrastructure_alerts (alert_id, alert_type, severity, service_name, alert_title, alert_description) "
        "VALUES ('f:1', 'UptimeTargetDown', 'critical', 'web', 't', 'd')"
    )


def _count(conn: psycopg.Connection[object], role: str, claims: str, table: str) -> int:
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {role}")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - fixed names
        assert row is not None
        return int(row[0])


def _as_user(role: str) -> str:
    return f'{{"sub": "{USERS[role]}", "role": "authenticated"}}'


@pytest.mark.parametrize(
    ("who", "table", "rows"),
    [
        ("finance", "cost_tracking", 1),
        ("finance", "backup_status", 0),
        ("finance", "deployment_history", 0),
        ("developer", "deployment_history", 1),
        ("developer", "cost_tracking", 0),
        ("developer", "infrastructure_alerts", 1),
        ("ops", "infrastructure_alerts", 1),
        ("ops", "deployment_history", 0),
        ("admin", "backup_status", 1),
        ("admin", "cost_tracking", 1),
    ],
)
async def test_rls_by_user_role(migrated_dsn: str, who: str, table: str, rows: int) -> None:
    with psycopg.connect(migrated_dsn) as conn:
        _seed(conn)
        conn.commit()
        assert _count(conn, "authenticated", _as_user(who), table) == rows


@pytest.mark.parametrize("table", sorted(SPEC_TABLES))
async def test_anonymous_sees_nothing_and_service_role_sees_all(
    migrated_dsn: str, table: str
) -> None:
    with psycopg.connect(migrated_dsn) as conn:
        _seed(conn)
        conn.commit()
        total = _count(conn, "postgres", "{}", table)
        assert _count(conn, "anon", '{"role": "anon"}', table) == 0
        assert _count(conn, "service_role", '{"role": "service_role"}', table) == total


async def test_users_see_their_own_deployments(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn) as conn:
        _seed(conn)
        mine = uuid.UUID(int=99)
        conn.execute("INSERT INTO auth.users (id) VALUES (%s)", (mine,))
        conn.execute(
            "INSERT INTO deployment_history (deployment_id, environment, git_branch, git_commit_hash, deployed_by) VALUES ('gh:2', 'preview', 'feat', 'def', %s)",
            (mine,),
        )
        conn.commit()
        assert (
            _count(
                conn,
                "authenticated",
                f'{{"sub": "{mine}", "role": "authenticated"}}',
                "deployment_history",
            )
            == 1
        )


async def test_the_compatibility_users_table_records_sign_ins(pg_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await migrate.apply(conn)
        cur = await conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'auth' AND table_name = 'users'"
        )
        assert "last_sign_in_at" in {r[0] for r in await cur.fetchall()}
