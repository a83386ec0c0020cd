"""Text comes back as str from a database whose encoding is SQL_ASCII (a cluster made without a
UTF-8 locale, as initdb does in a bare container): found when compose first ran for real, where
the recorder's /metrics failed on bytes label values."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from common import postgres
from tests.conftest import PG_ADMIN

pytestmark = pytest.mark.integration


@pytest.fixture
def sql_ascii_dsn() -> Iterator[str]:
    name = f"wsinfra_test_ascii_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0"
        )
    try:
        yield PG_ADMIN.replace("dbname=postgres", f"dbname={name}")
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_text_is_str_on_a_sql_ascii_database(sql_ascii_dsn: str) -> None:
    # Without the floor's client_encoding, psycopg hands back bytes here.
    async with await psycopg.AsyncConnection.connect(sql_ascii_dsn) as raw:
        assert (await (await raw.execute("SELECT 'production'::text")).fetchone()) == (
            b"production",
        )
    cfg = postgres.PgConnection.model_validate({"conninfo": sql_ascii_dsn})
    conn = await postgres.connect(cfg, "wsinfra-test")
    try:
        row = await (await conn.execute("SELECT 'production'::text")).fetchone()
    finally:
        await conn.close()
    assert row == ("production",)
