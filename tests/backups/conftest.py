"""A source database with the kinds of objects a drill compares, the record, and a worker
config writing dumps under a temporary location."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backups.config import BackupsConfig

SOURCE_SCHEMA = """
CREATE ROLE wsinfra_test_reader NOLOGIN;
CREATE TABLE customers (
    id bigint PRIMARY KEY, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL,
    balance numeric(12, 2) NOT NULL DEFAULT 0 CHECK (balance >= 0), tags text[], profile jsonb,
    -- A varchar IN-list: PostgreSQL deparses it differently after a dump and restore.
    tier VARCHAR(20) DEFAULT 'free' CHECK (tier IN ('free', 'pro', 'team'))
);
CREATE TABLE orders (
    customer_id bigint NOT NULL REFERENCES customers (id), n int NOT NULL,
    total double precision NOT NULL, note text, PRIMARY KEY (customer_id, n)
);
CREATE INDEX orders_total ON orders (total);
CREATE TABLE events (at timestamptz NOT NULL, payload bytea);  -- no primary key
CREATE FUNCTION order_count(c bigint) RETURNS bigint LANGUAGE sql STABLE
    AS 'SELECT count(*) FROM orders WHERE customer_id = c';
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.note := coalesce(NEW.note, 'new'); RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION touch();
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers ON orders FOR SELECT TO wsinfra_test_reader USING (total > 0);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
GRANT SELECT ON customers TO wsinfra_test_reader;
INSERT INTO customers
    SELECT i, 'c' || i || '@example.com', '2026-01-01T00:00:00Z'::timestamptz + i * interval '1 hour',
           i % 1000, ARRAY['t' || i % 3], jsonb_build_object('i', i, 'f', i / 7.0)
    FROM generate_series(1, 2000) i;
INSERT INTO orders SELECT c, n, c * 1.5 + n / 3.0, NULL
    FROM generate_series(1, 2000) c, generate_series(1, 5) n;
INSERT INTO events SELECT now() - i * interval '1 minute', decode(md5(i::text), 'hex')
    FROM generate_series(1, 500) i;
"""


def _drop_role() -> None:
    """The role is the cluster's: dropped once no database refers to it any more."""
    from tests.conftest import PG_ADMIN

    with (
        psycopg.connect(PG_ADMIN, autocommit=True) as admin,
        contextlib.suppress(psycopg.errors.DependentObjectsStillExist),
    ):
        admin.execute("DROP ROLE IF EXISTS wsinfra_test_reader")


@pytest.fixture
def source_dsn() -> Iterator[str]:
    """A second database (the thing backed up), with the schema above."""
    import uuid

    from tests.conftest import PG_ADMIN

    name = f"wsinfra_src_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = PG_ADMIN.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN CREATE ROLE wsinfra_test_reader NOLOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        conn.execute(SOURCE_SCHEMA.replace("CREATE ROLE wsinfra_test_reader NOLOGIN;", ""))
    try:
        yield dsn
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _drop_role()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory the postgres user can use too (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="wsinfra-test-backups-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def config(record_dsn: str, source_dsn: str, location: Path, **target: Any) -> BackupsConfig:
    drill = {"smoke_queries": ["SELECT id FROM customers WHERE id = 1"], **target.pop("drill", {})}
    return BackupsConfig.model_validate(
        {
            "record": {"conninfo": record_dsn},
            "location": str(location),
            "targets": [
                {
                    "name": "app",
                    "source": {"conninfo": source_dsn, "statement_timeout": "120s"},
                    "drill": drill,
                    **target,
                }
            ],
            "refresh_interval": "1s",
            "poll_interval": "0.2s",
        }
    )
