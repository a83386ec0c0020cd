"""One scrape of one database: a pooled read-only connection, every collector in turn, each
in its own transaction under statement_timeout, the whole under the scrape budget."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import psycopg
from prometheus_client.core import GaugeMetricFamily, Metric
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from exporters.supabase.config import Database
from exporters.supabase.sql import COLLECTORS, State

log = logging.getLogger("exporters.supabase.sql")

# Every sample name the SQL side can produce. Rules and dashboards are checked against this
# list, and the live tests check that a full scrape produces exactly these.
SAMPLE_NAMES = frozenset(
    {
        "supabase_build_info",
        "supabase_up",
        "supabase_sql_scrape_duration_seconds",
        "supabase_sql_collector_success",
        "supabase_sql_collector_duration_seconds",
        "supabase_db_connections",
        "supabase_db_max_connections",
        "supabase_db_oldest_transaction_seconds",
        "supabase_db_long_transactions",
        "supabase_db_blocked_sessions",
        "supabase_db_blocks_hit_total",
        "supabase_db_blocks_read_total",
        "supabase_db_commits_total",
        "supabase_db_rollbacks_total",
        "supabase_db_deadlocks_total",
        "supabase_db_size_bytes",
        "supabase_db_size_limit_bytes",
        "supabase_db_xid_age",
        "supabase_db_xid_wraparound_remaining_ratio",
        "supabase_db_is_replica",
        "supabase_db_replication_lag_seconds",
        "supabase_db_dead_tuples",
        "supabase_db_live_tuples",
        "supabase_db_vacuum_age_seconds",
        "supabase_db_statement_calls_total",
        "supabase_db_statement_seconds_total",
        "supabase_db_statement_rows_total",
        "supabase_db_statement_mean_seconds",
        "supabase_db_statement_max_seconds",
        "supabase_db_statement_info",
        "supabase_db_missing_index_suspect",
        "supabase_db_table_rows",
        "supabase_active_users",
    }
)


@dataclass(slots=True)
class Outcome:
    up: bool
    metrics: list[Metric] = field(default_factory=list)
    success: dict[str, bool] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0


class DatabaseScraper:
    def __init__(self, db: Database, password: str | None) -> None:
        self.db = db
        kwargs: dict[str, object] = {
            "connect_timeout": max(1, int(db.statement_timeout)),
            "application_name": "wsinfra-supabase-exporter",
        }
        if password is not None:
            kwargs["password"] = password
        self.pool = AsyncConnectionPool(
            db.conninfo,
            kwargs=kwargs,
            min_size=0,
            max_size=db.max_connections,
            open=False,
            configure=self._configure,
            # A broken connection is found on its next use; the pool then makes a new one.
            reconnect_timeout=30,
        )
        self._opened = False
        self.state = State()

    async def _configure(self, conn: psycopg.AsyncConnection[object]) -> None:
        # Autocommit: each collector query is its own read-only transaction, one round trip,
        # and a failed one leaves nothing to roll back. The timeout holds for every statement.
        await conn.set_autocommit(True)
        timeout_ms = int(self.db.statement_timeout * 1000)
        await conn.execute(f"SET statement_timeout = {timeout_ms}")
        await conn.execute("SET default_transaction_read_only = on")

    async def close(self) -> None:
        if self._opened:
            await self.pool.close()

    async def scrape(self) -> Outcome:
        if not self._opened:
            await self.pool.open(wait=False)
            self._opened = True
        start = time.perf_counter()
        out = Outcome(up=False)
        try:
            async with asyncio.timeout(self.db.scrape_budget):
                await asyncio.gather(*(self._run(group, out) for group in self._groups()))
        except (PoolTimeout, psycopg.OperationalError) as exc:
            log.warning(
                "database unreachable", extra={"project": self.db.name, "error": type(exc).__name__}
            )
        except TimeoutError:
            log.warning(
                "scrape budget exceeded",
                extra={"project": self.db.name, "budget": self.db.scrape_budget},
            )
        for name in COLLECTORS:
            if name not in self.db.disabled_collectors:
                out.success.setdefault(name, False)
        out.duration = time.perf_counter() - start
        return out

    def _groups(self) -> list[list[str]]:
        """Collectors per connection: with two connections allowed, pg_stat_statements (the
        costly read) runs beside the rest instead of after it."""
        names = [n for n in COLLECTORS if n not in self.db.disabled_collectors]
        if self.db.max_connections < 2 or "statements" not in names:
            return [names]
        return [["statements"], [n for n in names if n != "statements"]]

    async def _run(self, names: list[str], out: Outcome) -> None:
        async with self.pool.connection(timeout=self.db.scrape_budget) as conn:
            out.up = True
            await self._collect(conn, names, out)

    async def _collect(
        self, conn: psycopg.AsyncConnection[object], names: list[str], out: Outcome
    ) -> None:
        for name in names:
            collect = COLLECTORS[name]
            t0 = time.perf_counter()
            try:
                async with conn.cursor() as cur:
                    out.metrics += await collect(cur, self.db, self.db.name, self.state)
                out.success[name] = True
            except psycopg.OperationalError:
                out.success[name] = False
                raise  # the connection is gone: the rest would fail the same way
            except psycopg.Error as exc:
                # Permission denied, a missing extension or table, a statement timeout: this
                # collector fails, the others still run.
                out.success[name] = False
                log.warning(
                    "collector failed",
                    extra={
                        "project": self.db.name,
                        "collector": name,
                        "sqlstate": exc.sqlstate or "",
                        "error": type(exc).__name__,
                    },
                )
            out.seconds[name] = time.perf_counter() - t0


def meta(project: str, out: Outcome) -> list[Metric]:
    """Health of this scrape; disabled collectors are left out rather than reported failing."""
    up = GaugeMetricFamily(
        "supabase_up", "1 if the database answered this scrape.", labels=["project"]
    )
    up.add_metric([project], 1.0 if out.up else 0.0)
    dur = GaugeMetricFamily(
        "supabase_sql_scrape_duration_seconds",
        "How long this scrape's SQL collectors took.",
        labels=["project"],
    )
    dur.add_metric([project], out.duration)
    ok = GaugeMetricFamily(
        "supabase_sql_collector_success",
        "1 if the collector's query succeeded this scrape (0: timeout, permission, missing extension or table).",
        labels=["project", "collector"],
    )
    secs = GaugeMetricFamily(
        "supabase_sql_collector_duration_seconds",
        "Time each collector took this scrape.",
        labels=["project", "collector"],
    )
    for name in COLLECTORS:
        if name not in out.success:
            continue
        ok.add_metric([project, name], 1.0 if out.success[name] else 0.0)
        if name in out.seconds:
            secs.add_metric([project, name], out.seconds[name])
    return [up, dur, ok, secs]
