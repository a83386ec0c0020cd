"""One scrape of one database: a pooled read-only connection (common.postgres), every collector's
query in turn, each in its own transaction under statement_timeout, the whole under the scrape
budget. The outcome is an immutable `DatabaseSnapshot` (plain rows per collector); `render`
turns it into metric families without touching the database or the scraper's state."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg
from prometheus_client.core import GaugeMetricFamily, Metric
from psycopg_pool import PoolTimeout

from common import postgres
from exporters.supabase.config import Database
from exporters.supabase.sql import COLLECTORS, State

log = logging.getLogger("exporters.supabase.sql")
APPLICATION_NAME = "wsinfra-supabase-exporter"
UP_HELP = "1 if the database answered this scrape."

# Every sample name the SQL side can produce. Rules and dashboards are checked against this
# list, and the live tests check that a full scrape produces exactly these.
SAMPLE_NAMES = frozenset(
    {
        "supabase_build_info",
        "supabase_up",
        "supabase_scrape_duration_seconds",
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


@dataclass(frozen=True, slots=True)
class CollectorResult:
    name: str
    ok: bool
    # How long its query took; None when it never ran (the connection was gone or the budget
    # spent before its turn).
    seconds: float | None
    # What its query returned (an immutable row type of exporters.supabase.sql), when `ok`.
    rows: object = None


@dataclass(frozen=True, slots=True)
class DatabaseSnapshot:
    """One database's scrape, as the collectors render it."""

    db: Database
    up: bool  # a connection was had
    duration: float
    results: tuple[CollectorResult, ...]  # every enabled collector, in COLLECTORS order


@dataclass(slots=True)
class _Progress:
    """A scrape in flight (the query groups fill it on the event loop); frozen when it ends."""

    up: bool = False
    done: dict[str, CollectorResult] = field(default_factory=dict)


class DatabaseScraper:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Autocommit: each collector query is its own read-only transaction, one round trip,
        # and a failed one leaves nothing to roll back. The timeout holds for every statement;
        # the password file is read at each new connection.
        self.pool = postgres.pool(
            db.connection(),
            APPLICATION_NAME,
            autocommit=True,
            read_only=True,
            # A broken connection is found on its next use; the pool then makes a new one.
            reconnect_timeout=30,
        )
        self._opened = False
        self.state = State()

    async def close(self) -> None:
        if self._opened:
            await self.pool.close()

    async def scrape(self) -> DatabaseSnapshot:
        if not self._opened:
            await self.pool.open(wait=False)
            self._opened = True
        start = time.perf_counter()
        progress = _Progress()
        try:
            async with asyncio.timeout(self.db.scrape_budget):
                await asyncio.gather(*(self._run(group, progress) for group in self._groups()))
        except (PoolTimeout, psycopg.OperationalError) as exc:
            log.warning(
                "database unreachable", extra={"project": self.db.name, "error": type(exc).__name__}
            )
        except TimeoutError:
            log.warning(
                "scrape budget exceeded",
                extra={"project": self.db.name, "budget": self.db.scrape_budget},
            )
        results = tuple(
            progress.done.get(name, CollectorResult(name, ok=False, seconds=None))
            for name in COLLECTORS
            if name not in self.db.disabled_collectors
        )
        return DatabaseSnapshot(self.db, progress.up, time.perf_counter() - start, results)

    def _groups(self) -> list[list[str]]:
        """Collectors per connection: with two connections allowed, pg_stat_statements (the
        costly read) runs beside the rest instead of after it."""
        names = [n for n in COLLECTORS if n not in self.db.disabled_collectors]
        if self.db.max_connections < 2 or "statements" not in names:
            return [names]
        return [["statements"], [n for n in names if n != "statements"]]

    async def _run(self, names: list[str], progress: _Progress) -> None:
        async with self.pool.connection(timeout=self.db.scrape_budget) as conn:
            progress.up = True
            await self._query(conn, names, progress.done)

    async def _query(
        self,
        conn: psycopg.AsyncConnection[object],
        names: list[str],
        done: dict[str, CollectorResult],
    ) -> None:
        for name in names:
            query = COLLECTORS[name].query
            t0 = time.perf_counter()
            try:
                async with conn.cursor() as cur:
                    rows = await query(cur, self.db, self.state)
            except psycopg.OperationalError:
                done[name] = CollectorResult(name, False, time.perf_counter() - t0)
                raise  # the connection is gone: the rest would fail the same way
            except (psycopg.Error, TypeError, ValueError, ArithmeticError) as exc:
                # Permission denied, a missing extension or table, a statement timeout, a row
                # of an unexpected shape: this collector fails, the others still run.
                done[name] = CollectorResult(name, False, time.perf_counter() - t0)
                log.warning(
                    "collector failed",
                    extra={
                        "project": self.db.name,
                        "collector": name,
                        "sqlstate": getattr(exc, "sqlstate", None) or "",
                        "error": type(exc).__name__,
                    },
                )
            else:
                done[name] = CollectorResult(name, True, time.perf_counter() - t0, rows)


# --- the pure side -------------------------------------------------------------------------


def meta(snap: DatabaseSnapshot) -> list[Metric]:
    """Health of this scrape (supabase_up{project} is the shared app's, from the exporter's
    up()); disabled collectors are left out rather than reported failing."""
    project = snap.db.name
    dur = GaugeMetricFamily(
        "supabase_sql_scrape_duration_seconds",
        "How long this scrape's SQL collectors took.",
        labels=["project"],
    )
    dur.add_metric([project], snap.duration)
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
    for r in snap.results:
        ok.add_metric([project, r.name], 1.0 if r.ok else 0.0)
        if r.seconds is not None:
            secs.add_metric([project, r.name], r.seconds)
    return [dur, ok, secs]


def render_one(snap: DatabaseSnapshot) -> list[Metric]:
    """One database's families: its scrape's health, then each collector that succeeded."""
    out = meta(snap)
    for r in snap.results:
        if r.ok:
            out += COLLECTORS[r.name].render(snap.db.name, snap.db, r.rows)
    return out


def render(snaps: Iterable[DatabaseSnapshot]) -> list[Metric]:
    """Every database's families, one family per name (the text format forbids repeating one);
    the families are built here, so merging their samples changes no snapshot."""
    families: dict[str, Metric] = {}
    for snap in snaps:
        for fam in render_one(snap):
            have = families.get(fam.name)
            if have is None:
                families[fam.name] = fam
            else:
                have.samples += fam.samples
    return list(families.values())
