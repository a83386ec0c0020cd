"""One way to reach PostgreSQL for every service: a conninfo that never holds the password, the
password read from its file at each new connection (so a rotation needs no restart), a
statement timeout on every connection, and the pool settings in one place.

Config models embed `PgConnection` (or subclass it to change defaults); code asks it for
`connect()` (one connection) or `pool()` (psycopg_pool).
"""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from pydantic import AfterValidator, Field

from common.config import SecretFile, Strict, read_secret_file
from common.durations import Duration


def _check_conninfo(value: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(value)
    except Exception as exc:  # psycopg.ProgrammingError; its message never holds a password
        raise ValueError(f"not a libpq conninfo: {type(exc).__name__}") from None
    if "password" in parts:
        raise ValueError("passwords in conninfo are refused: use password_file")
    return value


# A libpq conninfo ("host=… dbname=… user=…") that carries no password (that lives in a file).
Conninfo = Annotated[str, AfterValidator(_check_conninfo)]


class PgConnection(Strict):
    # libpq connection string WITHOUT the password, e.g. "host=127.0.0.1 dbname=wsinfra user=x".
    conninfo: Conninfo
    # Read at every new connection, so a rotated password needs no restart.
    password_file: SecretFile | None = None
    # Every statement on these connections; a stuck database must not hold us forever.
    statement_timeout: Duration = 10.0
    # Pool bounds (services that hold a pool) and how long a caller waits for a connection.
    pool_min: Annotated[int, Field(ge=0, le=32)] = 1
    pool_max: Annotated[int, Field(ge=1, le=64)] = 4
    acquire_timeout: Duration = 5.0


def connect_kwargs(cfg: PgConnection, application_name: str) -> dict[str, Any]:
    """libpq keywords for a new connection: the password as the file says now."""
    from psycopg.conninfo import conninfo_to_dict

    # Text as str whatever the server's encoding: a cluster made without a UTF-8 locale is
    # SQL_ASCII, and psycopg then returns text as bytes (labels, names), which breaks the
    # metrics built from them. Supabase and the postgres image are UTF8; initdb in a bare
    # container is not.
    kwargs: dict[str, Any] = {"application_name": application_name, "client_encoding": "UTF8"}
    if "connect_timeout" not in conninfo_to_dict(cfg.conninfo):
        kwargs["connect_timeout"] = max(1, int(min(cfg.acquire_timeout, cfg.statement_timeout)))
    if cfg.password_file is not None:
        kwargs["password"] = read_secret_file(cfg.password_file)
    return kwargs


async def set_statement_timeout(conn: psycopg.AsyncConnection[Any], seconds: float) -> None:
    await conn.execute(f"SET statement_timeout = {int(seconds * 1000)}")


async def connect(cfg: PgConnection, application_name: str) -> psycopg.AsyncConnection[Any]:
    """One connection with the statement timeout set (the caller closes it)."""
    conn = await psycopg.AsyncConnection.connect(
        cfg.conninfo, **connect_kwargs(cfg, application_name)
    )
    try:
        await set_statement_timeout(conn, cfg.statement_timeout)
        await conn.commit()
    except BaseException:
        await conn.close()
        raise
    return conn


def pool(
    cfg: PgConnection,
    application_name: str,
    *,
    autocommit: bool = False,
    read_only: bool = False,
    **pool_kwargs: Any,
) -> AsyncConnectionPool:
    """A pool (not yet open) whose connections carry the timeout, and optionally autocommit and
    read-only; the password file is read at each new connection."""

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        if autocommit:
            await conn.set_autocommit(True)
        await set_statement_timeout(conn, cfg.statement_timeout)
        if read_only:
            await conn.execute("SET default_transaction_read_only = on")
        if not autocommit:
            await conn.commit()

    return AsyncConnectionPool(
        cfg.conninfo,
        kwargs=lambda: connect_kwargs(cfg, application_name),
        min_size=cfg.pool_min,
        max_size=cfg.pool_max,
        open=False,
        configure=configure,
        name=application_name,
        **pool_kwargs,
    )
