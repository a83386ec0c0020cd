"""The local stack's PostgreSQL: the machine's server, a database for the recorder, migrated."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from compose.processes import ROOT, StackError


def admin_conninfo() -> str:
    return os.environ.get(
        "WSINFRA_PG_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    )


def password_file() -> Path | None:
    """Written by scripts/bootstrap.sh only where PostgreSQL needed a password (not trust auth).

    Always the repository's .run/secrets, where bootstrap puts it, whatever WSINFRA_RUN_DIR a
    private stack (tests, benchmarks) uses.
    """
    default = ROOT / ".run" / "secrets" / "postgres_password"
    path = Path(os.environ.get("WSINFRA_PG_PASSWORD_FILE", default))
    return path if path.is_file() else None


def _admin(pwfile: Path | None) -> psycopg.Connection[Any]:
    conninfo = admin_conninfo()
    if pwfile is not None:
        conninfo = make_conninfo(conninfo, password=pwfile.read_text().strip())
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)


def ensure_database(name: str, pwfile: Path | None) -> str:
    """Create `name` if missing; return the recorder's conninfo (no password in it)."""
    try:
        with _admin(pwfile) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        raise StackError(
            f"PostgreSQL is not reachable with {admin_conninfo()!r} ({str(exc).strip()}); "
            "scripts/bootstrap.sh installs and starts it, or set WSINFRA_PG_ADMIN"
        ) from None
    params = {k: v for k, v in conninfo_to_dict(admin_conninfo()).items() if k != "password"}
    params["dbname"] = name
    return make_conninfo("", **params)


def drop_database(name: str, pwfile: Path | None) -> None:
    with _admin(pwfile) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def enable_pg_stat_statements(conninfo: str, pwfile: Path | None) -> bool:
    """Create the extension in the database if the server preloads it; True if it is usable.

    Loading it needs shared_preload_libraries and a server restart: the stack does not
    reconfigure the machine's PostgreSQL, it reports what is missing instead.
    """
    if pwfile is not None:
        conninfo = make_conninfo(conninfo, password=pwfile.read_text().strip())
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
        if row is None or "pg_stat_statements" not in str(row[0]):
            return False
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return True


DEMO_ACTIVE_USERS = 230


def seed_demo_users(conninfo: str, pwfile: Path | None, n: int = DEMO_ACTIVE_USERS) -> None:
    """DEMO only: users who signed in over the last 30 days in the compatibility auth.users, so
    cost per active user has a denominator (230 users: just over the spec's $2.00 a user)."""
    if pwfile is not None:
        conninfo = make_conninfo(conninfo, password=pwfile.read_text().strip())
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            """
            INSERT INTO auth.users (id, email, created_at, last_sign_in_at)
            SELECT md5('wsinfra-demo-' || i)::uuid, 'demo' || i || '@example.com',
                   now() - interval '90 days', now() - mod(i, 28) * interval '1 day'
            FROM generate_series(1, %s) AS i
            ON CONFLICT (id) DO UPDATE SET last_sign_in_at = EXCLUDED.last_sign_in_at
            """,
            (n,),
        )
