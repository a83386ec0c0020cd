"""One scrape of one database: a pooled read-only connection (common.postgres), the query of
every collector that is due in turn, each in its own transaction under statement_timeout, the
whole under the scrape budget. Cheap collectors are due on every scrape, costly ones once per
their interval (`Cadence`): in between, their last good rows are served. The outcome is an
immutable `DatabaseSnapshot` (plain rows per collector); `render` turns it into metric families
without touching the database or the scraper's state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
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


@dataclass(frozen=True, slots=True)
class CollectorResult:
    name: str
    # Its latest read succeeded: this scrape's, or (when `cached`) the latest one before.
    ok: bool
    # How long its latest read took; None when it never ran (the connection was gone or the
    # budget spent before its turn).
    seconds: float | None
    # The rows served (an immutable row type of exporters.supabase.sql): this scrape's read, or
    # the last good one while younger than its stale_after; None: nothing to serve.
    rows: object = None
    # This scrape did not read it (its cadence had not come round): `ok`, `seconds` and `rows`
    # are from an earlier read.
    cached: bool = False
    # Seconds since the served rows were read (0 when read this scrape).
    age: float = 0.0


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


@dataclass(slots=True)
class _Latest:
    """A collector's latest read, and its last good rows."""

    attempted: float  # when its latest read started (the scrape's clock)
    ok: bool
    seconds: float | None
    rows: object = None  # of the last good read
    read_at: float = 0.0  # when the last good read started


class Cadence:
    """Which collectors a scrape reads, and what it serves for each: the cheap ones are read on
    every scrape; the costly ones (config.DEFAULT_CADENCE, or the database's `cadence`) once per
    interval, their last good rows served in between until `stale_after`. A failed read is
    retried on the next interval, not on every scrape.

    A read is due at the scrape nearest its interval: once its latest read is older than the
    interval less half the time since the previous scrape. With 15 s scrapes a 60 s interval
    reads on every fourth scrape (not, by a few ms of jitter, every fifth), 300 s on every
    twentieth. Only one scrape of a database runs at a time (DatabaseScraper), so this is never
    changed by two at once."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.names = tuple(n for n in COLLECTORS if n not in db.disabled_collectors)
        self.latest: dict[str, _Latest] = {}
        self.last_scrape: float | None = None

    def due(self, now: float) -> list[str]:
        gap = 0.0 if self.last_scrape is None else max(now - self.last_scrape, 0.0)
        out = []
        for name in self.names:
            interval, last = self.db.interval(name), self.latest.get(name)
            if (
                not interval
                or last is None
                or now - last.attempted >= interval - min(gap, interval) / 2
            ):
                out.append(name)
        return out

    def settle(
        self, now: float, due: list[str], done: dict[str, CollectorResult]
    ) -> tuple[CollectorResult, ...]:
        """Record this scrape's reads (started at `now`) and say what to serve for each
        collector."""
        self.last_scrape = now
        out = []
        for name in self.names:
            last = self.latest.get(name)
            ran = done.get(name)
            cached = name not in due
            if ran is not None and ran.seconds is not None:
                good = ran.ok
                last = _Latest(
                    now,
                    good,
                    ran.seconds,
                    ran.rows if good else (last.rows if last else None),
                    now if good else (last.read_at if last else 0.0),
                )
                self.latest[name] = last
            rows, age = None, 0.0
            if last is not None and last.rows is not None:
                age = now - last.read_at
                interval = self.db.interval(name)
                if age == 0.0 or (interval and age <= self.db.stale_after(name)):
                    rows = last.rows
            if cached and last is not None:
                out.append(CollectorResult(name, last.ok, last.seconds, rows, True, age))
            elif ran is not None:
                out.append(CollectorResult(name, ran.ok, ran.seconds, rows, False, age))
            else:  # due, but never ran: tried again on the next scrape
                out.append(CollectorResult(name, False, None, rows, False, age))
        return tuple(out)


class DatabaseScraper:
    def __init__(self, db: Database, clock: Callable[[], float] = time.monotonic) -> None:
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
        self.cadence = Cadence(db)
        self.clock = clock
        self._up = False
        self._inflight: asyncio.Future[DatabaseSnapshot] | None = None

    async def close(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._inflight
        if self._opened:
            await self.pool.close()

    async def scrape(self) -> DatabaseSnapshot:
        """This database's snapshot. Scrapes that arrive while one is in flight (two Prometheus
        servers, a retry) share it: the database pays for one."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._scrape())
        # Shielded: a caller that goes away does not cancel the others' scrape.
        return await asyncio.shield(self._inflight)

    async def _scrape(self) -> DatabaseSnapshot:
        if not self._opened:
            await self.pool.open(wait=False)
            self._opened = True
        start = time.perf_counter()
        now = self.clock()
        due = self.cadence.due(now)
        progress = _Progress()
        try:
            async with asyncio.timeout(self.db.scrape_budget):
                await asyncio.gather(*(self._run(group, progress) for group in self._groups(due)))
        except (PoolTimeout, psycopg.OperationalError) as exc:
            log.warning(
                "database unreachable", extra={"project": self.db.name, "error": type(exc).__name__}
            )
        except TimeoutError:
            log.warning(
                "scrape budget exceeded",
                extra={"project": self.db.name, "budget": self.db.scrape_budget},
            )
        if due:
            self._up = progress.up
        # else nothing was due (every collector on a cadence): the last answer stands.
        results = self.cadence.settle(now, due, progress.done)
        return DatabaseSnapshot(self.db, self._up, time.perf_counter() - start, results)

    def _groups(self, due: list[str]) -> list[list[str]]:
        """Collectors per connection: with two connections allowed, pg_stat_statements (the
        costly read) runs beside the rest instead of after it."""
        if not due:
            return []
        if self.db.max_connections < 2 or "statements" not in due or len(due) == 1:
            return [due]
        return [["statements"], [n for n in due if n != "statements"]]

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
        "1 if the collector's latest query succeeded (0: timeout, permission, missing extension or table); made this scrape, or its latest read where supabase_sql_collector_cached is 1.",
        labels=["project", "collector"],
    )
    secs = GaugeMetricFamily(
        "supabase_sql_collector_duration_seconds",
        "Time the collector's latest query took (this scrape's, or its latest read where supabase_sql_collector_cached is 1).",
        labels=["project", "collector"],
    )
    cached = GaugeMetricFamily(
        "supabase_sql_collector_cached",
        "1 if this scrape did not query the collector (read on its own cadence) and served the rows of its last good read, 0 if it queried the database this scrape.",
        labels=["project", "collector"],
    )
    age = GaugeMetricFamily(
        "supabase_sql_collector_age_seconds",
        "Age of the rows served for the collector: 0 when read this scrape; rows older than the collector's stale_after are dropped.",
        labels=["project", "collector"],
    )
    for r in snap.results:
        ok.add_metric([project, r.name], 1.0 if r.ok else 0.0)
        if r.seconds is not None:
            secs.add_metric([project, r.name], r.seconds)
        cached.add_metric([project, r.name], 1.0 if r.cached else 0.0)
        if r.rows is not None:
            age.add_metric([project, r.name], r.age)
    return [dur, ok, secs, cached, age]


def render_one(snap: DatabaseSnapshot) -> list[Metric]:
    """One database's families: its scrape's health, then each collector with rows to serve."""
    out = meta(snap)
    for r in snap.results:
        if r.rows is not None:
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
