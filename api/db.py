"""The database as the caller sees it. Every request's reads and writes run in ONE transaction
that starts the way Supabase's own API starts one:

    SET LOCAL ROLE authenticated;
    SELECT set_config('request.jwt.claims', '<the caller's claims>', true);

so auth.uid() and auth.jwt() are the caller's and the spec's row-level security policies
(schema/migrations/0003) decide what they see and may change, not Python. Both settings are
transaction-local: a pooled connection carries nothing over to the next request.

How refusals surface: a SELECT returns only the rows the policies show (a finance user gets an
empty alert list, not a 403); an INSERT the policies refuse raises InsufficientPrivilege, which
becomes a 403 here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.auth import Identity
from api.config import Database as DatabaseConfig
from api.config import Machine
from api.errors import ApiError
from common import postgres
from schema import writes

log = logging.getLogger(__name__)

# The table of the newest migration the API needs (0013, backups and restore drills; 0011's
# maintenance windows, 0009's PagerDuty webhooks and 0008's audit log before it, without which
# the API cannot write at all).
REQUIRED_TABLE = "public.restore_drills"


class Database:
    def __init__(self, cfg: DatabaseConfig) -> None:
        self.cfg = cfg
        self.pool = postgres.pool(cfg, "wsinfra-api", check=AsyncConnectionPool.check_connection)

    async def open(self) -> None:
        # Do not wait: the API starts (and answers 503) while the database is away.
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def as_caller(self, who: Identity) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection inside a transaction running as `who`; it commits when the block ends
        and rolls back if the block raises (so nothing of a failed request is written)."""
        async with (
            _errors(),
            self.pool.connection(timeout=self.cfg.acquire_timeout) as conn,
            conn.transaction(),
        ):
            try:
                await conn.execute("SET LOCAL ROLE authenticated")
            except psycopg.errors.InsufficientPrivilege:
                # Our setup, not the caller's rights: never a 403.
                log.error(
                    "cannot act as the caller: the API's login role is not a member of "
                    "authenticated (GRANT authenticated TO <role>)"
                )
                raise ApiError("db_unavailable", "the database is unavailable; retry") from None
            await conn.execute(
                "SELECT set_config('request.jwt.claims', %s, true)", (who.claims_json,)
            )
            yield conn

    @contextlib.asynccontextmanager
    async def as_system(self, role: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A transaction as one of the system's own roles (the background loops': migrations
        0010, 0012), without a caller's claims. Commits when the block ends, rolls back if it
        raises; database errors propagate as psycopg's (the loops count and retry them)."""
        async with (
            self.pool.connection(timeout=self.cfg.acquire_timeout) as conn,
            conn.transaction(),
        ):
            # `role` is one of our constants, never input.
            await conn.execute(f"SET LOCAL ROLE {role}")
            yield conn

    async def ready(self) -> bool:
        """Reachable, and migrated far enough for the API (REQUIRED_TABLE exists)."""
        try:
            # Short: a probe or a scrape must answer while the database is away.
            async with self.pool.connection(timeout=min(2.0, self.cfg.acquire_timeout)) as conn:
                cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (REQUIRED_TABLE,))
                row = await cur.fetchone()
                await conn.rollback()
                return bool(row and row[0])
        except (psycopg.Error, PoolTimeout):
            return False

    async def provision_machines(self, machines: tuple[Machine, ...]) -> None:
        """Make every machine user exist with its role, with the API's own login role (not as
        a caller: no caller may create users or grant roles)."""
        if not machines:
            return
        async with self.pool.connection(timeout=self.cfg.acquire_timeout) as conn:
            await writes.upsert_machine_users(conn, [(m.user_id, m.role) for m in machines])


@contextlib.asynccontextmanager
async def _errors() -> AsyncIterator[None]:
    """Database failures as refusals: RLS's no is a 403, values the database refuses a 422,
    anything else about the database (down, timed out, not migrated) a 503."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege:
        raise ApiError("forbidden", "row-level security does not allow this") from None
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        raise ApiError(
            "invalid_request", f"the database refused the values (SQLSTATE {exc.sqlstate})"
        ) from None
    except (psycopg.Error, PoolTimeout) as exc:
        sqlstate = getattr(exc, "sqlstate", None)
        log.warning(
            "database unavailable", extra={"error": type(exc).__name__, "sqlstate": sqlstate}
        )
        raise ApiError("db_unavailable", "the database is unavailable; retry") from None


# Probe rows the spec's policies judge like any other (the WITH CHECK of a FOR ALL policy is
# its USING expression, so the answer to "may I insert this?" is also "may I see rows?").
# They are never kept: see policy_admits.
ALERTS_PROBE = """
INSERT INTO infrastructure_alerts (alert_type, severity, service_name, alert_title, alert_description)
VALUES ('wsinfra-api-probe', 'info', 'wsinfra-api', 'probe', 'probe')
"""
# "Admin access to infrastructure metrics": admin, or a service_role token.
METRICS_PROBE = """
INSERT INTO infrastructure_metrics (service_name, region, metric_type, metric_value, metric_unit)
VALUES ('wsinfra-api-probe', 'probe', 'probe', 0, 'probe')
"""
# "Finance team access to costs": admin or finance. A provider name and a period no real row
# has, so the table's UNIQUE constraint cannot answer in the policy's place.
COSTS_PROBE = """
INSERT INTO cost_tracking (service_provider, service_category, billing_period_start,
    billing_period_end, usage_quantity, usage_unit, cost_usd)
VALUES ('wsinfra-api-probe', 'probe', '1900-01-01', '1900-01-02', 0, 'probe', 0)
"""


async def policy_admits(conn: psycopg.AsyncConnection[Any], probe: str) -> bool:
    """Whether the table's row-level security policy admits the caller: the probe INSERT is
    tried under a savepoint that is always rolled back. RLS's own WITH CHECK answers, so no
    role list lives in Python and a change of the policy changes the answer."""
    try:
        async with conn.transaction():
            await conn.execute(probe)
            raise psycopg.Rollback()  # undo the probe row, keep the outer transaction
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


async def may_write_alerts(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the alerts policy lets the caller write alerts."""
    return await policy_admits(conn, ALERTS_PROBE)
