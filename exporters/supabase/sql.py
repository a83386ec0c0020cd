"""SQL collectors: what PostgreSQL says about itself, read over a read-only connection.

Each collector is two halves. Its query (`query_*`) is one short read in its own read-only
transaction under `statement_timeout`, returning plain immutable rows; its render (`render_*`)
is a pure function of those rows (and the immutable config) into metric families. One query
failing (permission denied, a missing extension, a timeout) is reported by
supabase_sql_collector_success and does not stop the others. The cheap ones run on every scrape;
the costly ones (pg_stat_statements, per-table statistics, the database's size, auth.users) on
their own cadence (config.DEFAULT_CADENCE; exporters/supabase/scrape.py serves their last good
rows in between). Works on PostgreSQL ≥ 14 and on Supabase (pg_monitor is enough;
pg_read_all_stats to see other roles' statements).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import psycopg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from exporters.supabase.config import COLLECTOR_NAMES, Database

XID_LIMIT = 2**31  # transaction ids until wraparound
STATES = {
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
}
_SPACE = re.compile(r"\s+")
_TABLE = re.compile(r'\b(?:FROM|JOIN|UPDATE|INTO)\s+((?:"?\w+"?\.)?"?\w+"?)', re.IGNORECASE)
_PREDICATE = re.compile(
    r'((?:"?\w+"?\.)?"?\w+"?)\s*(?:=|<>|!=|<=|>=|<|>|\bIN\b|\bLIKE\b|\bILIKE\b|\bBETWEEN\b|=\s*ANY)\s*\(?\$\d+',
    re.IGNORECASE,
)
_SQL_WORDS = {"select", "from", "where", "and", "or", "not", "join", "on", "set", "values", "limit"}


def statement_text(query: str, limit: int) -> str:
    """pg_stat_statements' normalized text ($1 for every literal), on one line, bounded."""
    text = _SPACE.sub(" ", query).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def statement_shape(query: str) -> tuple[str, str]:
    """(tables, predicate columns) a statement reads, comma-joined, for the remediation hint."""
    tables = sorted({t.strip('"').lower() for t in _TABLE.findall(query)} - _SQL_WORDS)
    where = re.search(r"\bWHERE\b(.*)", query, re.IGNORECASE | re.DOTALL)
    found = _PREDICATE.findall(where.group(1)) if where else []
    cols = sorted({c.split(".")[-1].strip('"').lower() for c in found} - _SQL_WORDS)
    return ",".join(tables[:5]), ",".join(cols[:5])


@dataclass
class State:
    """What a database's queries remember between scrapes (the renders never read it)."""

    # queryid → (text, tables, predicate columns): a statement's text never changes, and
    # reading texts makes pg_stat_statements load its whole text file.
    texts: OrderedDict[str, tuple[str, str, str]] = field(default_factory=OrderedDict)


Cursor = psycopg.AsyncCursor[Any]
TEXT_CACHE = 2000


def gauge(name: str, doc: str, project: str, value: float, **labels: str) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["project", *labels])
    g.add_metric([project, *labels.values()], value)
    return g


def _one(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    if row is None:
        raise psycopg.DataError("the query returned no row")
    return row


# --- connections ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connections:
    # Client connections per pg_stat_activity state (every known state, zeros included).
    by_state: tuple[tuple[str, int], ...]
    # max_connections minus the superuser reserve.
    usable: int


async def query_connections(cur: Cursor, db: Database, state: State) -> Connections:
    # One round trip: the settings ride along as a row of their own (NULL state).
    await cur.execute(
        "SELECT COALESCE(state, 'unknown'), count(*) FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' GROUP BY 1"
        " UNION ALL SELECT NULL, current_setting('max_connections')::int"
        " - current_setting('superuser_reserved_connections')::int"
    )
    by_state = dict.fromkeys(STATES, 0)
    usable: int | None = None
    for conn_state, n in await cur.fetchall():
        if conn_state is None:
            usable = int(n)
            continue
        key = conn_state if conn_state in STATES else "unknown"
        by_state[key] = by_state.get(key, 0) + n
    if usable is None:
        raise psycopg.DataError("the settings row is missing")
    return Connections(tuple(sorted(by_state.items())), usable)


def render_connections(p: str, db: Database, r: Connections) -> list[Metric]:
    fam = GaugeMetricFamily(
        "supabase_db_connections",
        "Client connections by state (pg_stat_activity).",
        labels=["project", "state"],
    )
    for conn_state, n in r.by_state:
        fam.add_metric([p, conn_state.replace(" ", "_").replace("(", "").replace(")", "")], n)
    return [
        fam,
        gauge(
            "supabase_db_max_connections",
            "max_connections minus the superuser reserve.",
            p,
            r.usable,
        ),
    ]


# --- activity ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Activity:
    oldest_transaction_seconds: float
    long_transactions: int
    blocked_sessions: int


async def query_activity(cur: Cursor, db: Database, state: State) -> Activity:
    await cur.execute(
        "SELECT COALESCE(max(EXTRACT(EPOCH FROM now() - xact_start)), 0),"
        " count(*) FILTER (WHERE xact_start < now() - make_interval(secs => %s)),"
        " count(*) FILTER (WHERE wait_event_type = 'Lock')"
        " FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        (db.long_transaction,),
    )
    row = _one(await cur.fetchone())
    return Activity(float(row[0]), int(row[1]), int(row[2]))


def render_activity(p: str, db: Database, r: Activity) -> list[Metric]:
    return [
        gauge(
            "supabase_db_oldest_transaction_seconds",
            "Age of the oldest open transaction.",
            p,
            r.oldest_transaction_seconds,
        ),
        gauge(
            "supabase_db_long_transactions",
            f"Transactions open longer than {db.long_transaction:g}s.",
            p,
            r.long_transactions,
        ),
        gauge(
            "supabase_db_blocked_sessions", "Sessions waiting for a lock.", p, r.blocked_sessions
        ),
    ]


# --- database ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatabaseStats:
    blocks_hit: int
    blocks_read: int
    commits: int
    rollbacks: int
    deadlocks: int


async def query_database(cur: Cursor, db: Database, state: State) -> DatabaseStats:
    await cur.execute(
        "SELECT blks_hit, blks_read, xact_commit, xact_rollback, deadlocks"
        " FROM pg_stat_database WHERE datname = current_database()"
    )
    hit, read, commits, rollbacks, deadlocks = (int(v) for v in _one(await cur.fetchone()))
    return DatabaseStats(hit, read, commits, rollbacks, deadlocks)


def render_database(p: str, db: Database, r: DatabaseStats) -> list[Metric]:
    out: list[Metric] = []
    for name, doc, v in (
        ("supabase_db_blocks_hit", "Buffer cache hits (pg_stat_database).", r.blocks_hit),
        ("supabase_db_blocks_read", "Blocks read from disk (pg_stat_database).", r.blocks_read),
        ("supabase_db_commits", "Committed transactions.", r.commits),
        ("supabase_db_rollbacks", "Rolled back transactions.", r.rollbacks),
        ("supabase_db_deadlocks", "Deadlocks detected.", r.deadlocks),
    ):
        c = CounterMetricFamily(name, doc, labels=["project"])
        c.add_metric([p], v)
        out.append(c)
    return out


# --- database size -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatabaseSize:
    size_bytes: int


async def query_database_size(cur: Cursor, db: Database, state: State) -> DatabaseSize:
    # pg_database_size() stat()s every file of the database: on its own cadence (once a minute).
    await cur.execute("SELECT pg_database_size(current_database())")
    return DatabaseSize(int(_one(await cur.fetchone())[0]))


def render_database_size(p: str, db: Database, r: DatabaseSize) -> list[Metric]:
    out: list[Metric] = [
        gauge(
            "supabase_db_size_bytes",
            "Size of the database on disk (pg_database_size, read on its own cadence: once a minute by default).",
            p,
            r.size_bytes,
        )
    ]
    if db.size_limit_bytes is not None:
        out.append(
            gauge(
                "supabase_db_size_limit_bytes",
                "The disk the database may use (config).",
                p,
                db.size_limit_bytes,
            )
        )
    return out


# --- wraparound ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wraparound:
    # Oldest unfrozen transaction id age of any database.
    xid_age: float


async def query_wraparound(cur: Cursor, db: Database, state: State) -> Wraparound:
    await cur.execute("SELECT max(age(datfrozenxid)) FROM pg_database")
    return Wraparound(float(_one(await cur.fetchone())[0]))


def render_wraparound(p: str, db: Database, r: Wraparound) -> list[Metric]:
    return [
        gauge(
            "supabase_db_xid_age",
            "Oldest unfrozen transaction id age of any database.",
            p,
            r.xid_age,
        ),
        gauge(
            "supabase_db_xid_wraparound_remaining_ratio",
            "Share of the 2^31 transaction ids left before wraparound forces a shutdown.",
            p,
            1 - r.xid_age / XID_LIMIT,
        ),
    ]


# --- replication ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replication:
    is_replica: bool
    # (replica, replay lag seconds): per replica on a primary, ("self", since the last replayed
    # transaction) on a replica.
    lag: tuple[tuple[str, float], ...]


async def query_replication(cur: Cursor, db: Database, state: State) -> Replication:
    await cur.execute(
        "SELECT pg_is_in_recovery(),"
        " CASE WHEN pg_is_in_recovery() THEN EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END"
    )
    row = _one(await cur.fetchone())
    if row[0]:
        return Replication(True, (("self", float(row[1] or 0.0)),))
    await cur.execute(
        "SELECT left(COALESCE(NULLIF(application_name, ''), 'unnamed'), 40),"
        " COALESCE(EXTRACT(EPOCH FROM replay_lag), 0) FROM pg_stat_replication LIMIT 20"
    )
    return Replication(False, tuple((name, float(s)) for name, s in await cur.fetchall()))


def render_replication(p: str, db: Database, r: Replication) -> list[Metric]:
    lag = GaugeMetricFamily(
        "supabase_db_replication_lag_seconds",
        "Replay lag: per replica on a primary (pg_stat_replication), or since the last replayed transaction on a replica.",
        labels=["project", "replica"],
    )
    for name, seconds in r.lag:
        lag.add_metric([p, name], seconds)
    return [gauge("supabase_db_is_replica", "1 on a read replica.", p, float(r.is_replica)), lag]


# --- statements ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """One listed statement of pg_stat_statements (times in milliseconds, as it keeps them)."""

    queryid: str
    calls: float
    total_ms: float
    mean_ms: float
    max_ms: float
    rows: float
    top_mean: bool  # among the top N by mean time
    top_total: bool  # among the top N by total time
    text: str  # normalized, on one line, bounded ("" when pg_stat_statements lost it)
    tables: str
    predicate_columns: str


@dataclass(frozen=True, slots=True)
class Statements:
    listed: tuple[Statement, ...]
    # Every other statement of this database, summed: queryid "other".
    other_calls: float
    other_ms: float
    other_rows: float


async def query_statements(cur: Cursor, db: Database, state: State) -> Statements:
    n = db.top_statements
    # Two top-N heaps over the statements, without texts (showtext := false: the text file is
    # read only for statements not seen before), and one sum for "other".
    await cur.execute(
        "WITH s AS MATERIALIZED ("
        "  SELECT queryid, calls, total_exec_time, mean_exec_time, max_exec_time, rows"
        "  FROM pg_stat_statements(false)"
        "  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL"
        ")"
        " (SELECT 'mean', queryid::text, calls, total_exec_time, mean_exec_time, max_exec_time, rows"
        "   FROM s ORDER BY mean_exec_time DESC, queryid LIMIT %(n)s)"
        " UNION ALL"
        " (SELECT 'total', queryid::text, calls, total_exec_time, mean_exec_time, max_exec_time, rows"
        "   FROM s ORDER BY total_exec_time DESC, queryid LIMIT %(n)s)"
        " UNION ALL"
        " SELECT 'all', NULL, COALESCE(sum(calls), 0), COALESCE(sum(total_exec_time), 0), NULL, NULL,"
        "   COALESCE(sum(rows), 0) FROM s",
        {"n": n},
    )
    # queryid → [calls, total, mean, max, rows, top by mean, top by total]
    listed: dict[str, list[Any]] = {}
    everything = (0.0, 0.0, 0.0)
    for why, qid, c, tot, mn, mxv, r in await cur.fetchall():
        if why == "all":
            everything = (float(c), float(tot), float(r))
        else:
            row = listed.setdefault(
                qid, [float(c), float(tot), float(mn), float(mxv), float(r), False, False]
            )
            row[5 if why == "mean" else 6] = True  # listed by mean, by total, or both
    missing = [qid for qid in listed if qid not in state.texts]
    if missing:
        await cur.execute(
            "SELECT queryid::text, left(query, 4000) FROM pg_stat_statements(true)"
            " WHERE queryid = ANY(%s::bigint[])",
            (missing,),
        )
        for qid, query in await cur.fetchall():
            one_line = _SPACE.sub(" ", query or "")
            state.texts[qid] = (
                statement_text(one_line, db.statement_text_max),
                *statement_shape(one_line),
            )
        while len(state.texts) > TEXT_CACHE:
            state.texts.popitem(last=False)
    out: list[Statement] = []
    for qid, (c, tot, mn, mxv, r, top_mean, top_total) in listed.items():
        if qid in state.texts:
            state.texts.move_to_end(qid)  # recently listed: kept longest
        text, tables, cols = state.texts.get(qid, ("", "", ""))
        out.append(Statement(qid, c, tot, mn, mxv, r, top_mean, top_total, text, tables, cols))
    return Statements(
        tuple(out),
        other_calls=max(everything[0] - sum(s.calls for s in out), 0.0),
        other_ms=max(everything[1] - sum(s.total_ms for s in out), 0.0),
        other_rows=max(everything[2] - sum(s.rows for s in out), 0.0),
    )


def render_statements(p: str, db: Database, r: Statements) -> list[Metric]:
    calls = CounterMetricFamily(
        "supabase_db_statement_calls",
        f"Calls per statement (pg_stat_statements): the top {db.top_statements} by mean and by total time, the rest as queryid 'other'.",
        labels=["project", "queryid"],
    )
    total = CounterMetricFamily(
        "supabase_db_statement_seconds",
        "Execution time per statement (pg_stat_statements), same statements as the calls counter.",
        labels=["project", "queryid"],
    )
    rows = CounterMetricFamily(
        "supabase_db_statement_rows",
        "Rows returned or affected per statement.",
        labels=["project", "queryid"],
    )
    mean = GaugeMetricFamily(
        "supabase_db_statement_mean_seconds",
        "Mean execution time per statement since statistics were last reset.",
        labels=["project", "queryid"],
    )
    mx = GaugeMetricFamily(
        "supabase_db_statement_max_seconds",
        "Slowest execution since the last reset.",
        labels=["project", "queryid"],
    )
    info = InfoMetricFamily(
        "supabase_db_statement",
        "Each listed statement: its normalized text (literals are $n), the tables it reads and the columns its predicates compare, and why it is listed.",
        labels=["project", "queryid"],
    )
    for s in r.listed:
        calls.add_metric([p, s.queryid], s.calls)
        total.add_metric([p, s.queryid], s.total_ms / 1000)
        rows.add_metric([p, s.queryid], s.rows)
        mean.add_metric([p, s.queryid], s.mean_ms / 1000)
        mx.add_metric([p, s.queryid], s.max_ms / 1000)
        top = "mean,total" if s.top_mean and s.top_total else "mean" if s.top_mean else "total"
        info.add_metric(
            [p, s.queryid],
            {
                "query": s.text,
                "tables": s.tables,
                "predicate_columns": s.predicate_columns,
                "top": top,
            },
        )
    calls.add_metric([p, "other"], r.other_calls)
    total.add_metric([p, "other"], r.other_ms / 1000)
    rows.add_metric([p, "other"], r.other_rows)
    return [calls, total, rows, mean, mx, info]


# --- tables --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suspect:
    """A large table read sequentially far more often than by index."""

    table: str  # schema.name
    seq_scans: float
    idx_scans: float
    live_rows: float


@dataclass(frozen=True, slots=True)
class Tables:
    dead_tuples: float
    live_tuples: float
    # Longest time since a table with over 1,000 dead rows was last vacuumed.
    vacuum_age_seconds: float
    suspects: tuple[Suspect, ...]


# pg_stat_user_tables, reduced to what the collector reads: the view computes ~20 statistics
# per table and joins every index to sum their scans; here the sums over all tables take three
# lookups per table, and the index scans are summed only for the few large, often seq-scanned
# candidates. Same tables (relkind r, t, m, p outside pg_catalog, information_schema and
# pg_toast*), same expressions as the view: about a third of its cost with 1,000 tables.
TABLES = (
    "WITH t AS MATERIALIZED ("
    "  SELECT c.oid, n.nspname, c.relname, pg_stat_get_dead_tuples(c.oid) AS n_dead_tup,"
    "   pg_stat_get_live_tuples(c.oid) AS n_live_tup, pg_stat_get_numscans(c.oid) AS seq_scan"
    "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE c.relkind IN ('r', 't', 'm', 'p')"
    "   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast')"
    " SELECT 'sum', NULL, COALESCE(sum(n_dead_tup), 0), COALESCE(sum(n_live_tup), 0),"
    "  COALESCE(max(EXTRACT(EPOCH FROM now() - GREATEST(pg_stat_get_last_autovacuum_time(oid),"
    "   pg_stat_get_last_vacuum_time(oid), pg_stat_get_last_analyze_time(oid))))"
    "   FILTER (WHERE n_dead_tup > 1000), 0), NULL"
    " FROM t"
    " UNION ALL"
    " (SELECT 'suspect', nspname || '.' || relname, seq_scan, COALESCE(idx_scan, 0), n_live_tup,"
    "   pg_stat_get_tuples_returned(oid) AS seq_tup_read"
    "  FROM t CROSS JOIN LATERAL (SELECT sum(pg_stat_get_numscans(i.indexrelid))::bigint AS idx_scan"
    "   FROM pg_index i WHERE i.indrelid = t.oid) x"
    "  WHERE n_live_tup >= %s AND seq_scan >= %s AND seq_scan > %s * COALESCE(idx_scan, 0)"
    "  ORDER BY seq_tup_read DESC, 2 LIMIT %s)"
)


async def query_tables(cur: Cursor, db: Database, state: State) -> Tables:
    """Vacuum state and missing-index suspects, from one pass over the user tables' statistics
    (with thousands of tables, each pass costs stats lookups per table: on its own cadence)."""
    mi = db.missing_index
    await cur.execute(TABLES, (mi.min_rows, mi.min_seq_scans, mi.ratio, mi.max_tables))
    totals = (0.0, 0.0, 0.0)
    suspects: list[Suspect] = []
    for kind, table, a, b, c, _read in await cur.fetchall():
        if kind == "sum":
            totals = (float(a), float(b), float(c))
        else:
            suspects.append(Suspect(table, float(a), float(b), float(c)))
    return Tables(*totals, suspects=tuple(suspects))


def render_tables(p: str, db: Database, r: Tables) -> list[Metric]:
    suspects = GaugeMetricFamily(
        "supabase_db_missing_index_suspect",
        "Large tables read sequentially far more often than by index: sequential scans per index scan.",
        labels=["project", "table"],
    )
    table_rows = GaugeMetricFamily(
        "supabase_db_table_rows",
        "Live rows of each missing-index suspect.",
        labels=["project", "table"],
    )
    for s in r.suspects:
        suspects.add_metric([p, s.table], s.seq_scans / (s.idx_scans + 1))
        table_rows.add_metric([p, s.table], s.live_rows)
    return [
        suspects,
        table_rows,
        gauge(
            "supabase_db_dead_tuples",
            "Dead rows waiting for vacuum, all user tables.",
            p,
            r.dead_tuples,
        ),
        gauge("supabase_db_live_tuples", "Live rows, all user tables.", p, r.live_tuples),
        gauge(
            "supabase_db_vacuum_age_seconds",
            "Longest time since a table with over 1,000 dead rows was last vacuumed.",
            p,
            r.vacuum_age_seconds,
        ),
    ]


# --- active users --------------------------------------------------------------------------

DEFAULT_ACTIVE_USERS = (
    "SELECT count(*) FILTER (WHERE last_sign_in_at > now() - interval '1 day'),"
    " count(*) FILTER (WHERE last_sign_in_at > now() - interval '30 days') FROM auth.users"
)


@dataclass(frozen=True, slots=True)
class ActiveUsers:
    day: float
    month: float


async def query_active_users(cur: Cursor, db: Database, state: State) -> ActiveUsers:
    await cur.execute(db.active_users_query or DEFAULT_ACTIVE_USERS)
    row = await cur.fetchone()
    if row is None or len(row) < 2:
        raise psycopg.DataError("active users query must return one row: (day, month)")
    return ActiveUsers(float(row[0]), float(row[1]))


def render_active_users(p: str, db: Database, r: ActiveUsers) -> list[Metric]:
    fam = GaugeMetricFamily(
        "supabase_active_users",
        "Users who signed in within the window (1d, 30d), for cost per active user.",
        labels=["project", "window"],
    )
    fam.add_metric([p, "1d"], r.day)
    fam.add_metric([p, "30d"], r.month)
    return [fam]


# --- the collectors, by name ---------------------------------------------------------------

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class SqlCollector(Generic[R]):
    """A query that returns immutable rows, and the pure render of those rows."""

    query: Callable[[Cursor, Database, State], Awaitable[R]]
    render: Callable[[str, Database, R], list[Metric]]


COLLECTORS: dict[str, SqlCollector[Any]] = {
    "connections": SqlCollector(query_connections, render_connections),
    "activity": SqlCollector(query_activity, render_activity),
    "database": SqlCollector(query_database, render_database),
    "database_size": SqlCollector(query_database_size, render_database_size),
    "wraparound": SqlCollector(query_wraparound, render_wraparound),
    "replication": SqlCollector(query_replication, render_replication),
    "tables": SqlCollector(query_tables, render_tables),
    "statements": SqlCollector(query_statements, render_statements),
    "active_users": SqlCollector(query_active_users, render_active_users),
}
if (
    tuple(COLLECTORS) != COLLECTOR_NAMES
):  # pragma: no cover - a developer's mistake, caught on import
    raise RuntimeError(
        "exporters.supabase.config.COLLECTOR_NAMES must list sql.COLLECTORS in order"
    )
