"""SQL collectors: what PostgreSQL says about itself, read on scrape over a read-only connection.

Each collector is one short query in its own read-only transaction under `statement_timeout`;
one failing (permission denied, a missing extension, a timeout) is reported by
supabase_sql_collector_success and does not stop the others. Works on PostgreSQL ≥ 14 and on
Supabase (pg_monitor is enough; pg_read_all_stats to see other roles' statements).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

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
    """What a database's collectors remember between scrapes."""

    # queryid → (text, tables, predicate columns): a statement's text never changes, and
    # reading texts makes pg_stat_statements load its whole text file.
    texts: OrderedDict[str, tuple[str, str, str]] = field(default_factory=OrderedDict)
    # pg_database_size() walks every file of the database: measured once a minute.
    size: tuple[float, int] | None = None


Collector = Callable[[psycopg.AsyncCursor[Any], Database, str, State], Awaitable[list[Metric]]]
TEXT_CACHE = 2000
DATABASE_STATS = (
    "SELECT blks_hit, blks_read, xact_commit, xact_rollback, deadlocks, NULL"
    " FROM pg_stat_database WHERE datname = current_database()"
)
DATABASE_STATS_AND_SIZE = (
    "SELECT blks_hit, blks_read, xact_commit, xact_rollback, deadlocks, pg_database_size(datname)"
    " FROM pg_stat_database WHERE datname = current_database()"
)
SIZE_EVERY = 60.0


def gauge(name: str, doc: str, project: str, value: float, **labels: str) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["project", *labels])
    g.add_metric([project, *labels.values()], value)
    return g


async def connections(
    cur: psycopg.AsyncCursor[Any], db: Database, p: str, state: State
) -> list[Metric]:
    await cur.execute(
        "SELECT COALESCE(state, 'unknown'), count(*) FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' GROUP BY 1"
    )
    by_state = {s: 0 for s in STATES}
    for conn_state, n in await cur.fetchall():
        key = conn_state if conn_state in STATES else "unknown"
        by_state[key] = by_state.get(key, 0) + n
    fam = GaugeMetricFamily(
        "supabase_db_connections",
        "Client connections by state (pg_stat_activity).",
        labels=["project", "state"],
    )
    for conn_state, n in sorted(by_state.items()):
        fam.add_metric([p, conn_state.replace(" ", "_").replace("(", "").replace(")", "")], n)
    await cur.execute(
        "SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int"
    )
    row = await cur.fetchone()
    assert row is not None
    return [
        fam,
        gauge(
            "supabase_db_max_connections",
            "max_connections minus the superuser reserve.",
            p,
            row[0] - row[1],
        ),
    ]


async def activity(
    cur: psycopg.AsyncCursor[Any], db: Database, p: str, state: State
) -> list[Metric]:
    await cur.execute(
        "SELECT COALESCE(max(EXTRACT(EPOCH FROM now() - xact_start)), 0),"
        " count(*) FILTER (WHERE xact_start < now() - make_interval(secs => %s)),"
        " count(*) FILTER (WHERE wait_event_type = 'Lock')"
        " FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        (db.long_transaction,),
    )
    row = await cur.fetchone()
    assert row is not None
    return [
        gauge(
            "supabase_db_oldest_transaction_seconds",
            "Age of the oldest open transaction.",
            p,
            float(row[0]),
        ),
        gauge(
            "supabase_db_long_transactions",
            f"Transactions open longer than {db.long_transaction:g}s.",
            p,
            row[1],
        ),
        gauge("supabase_db_blocked_sessions", "Sessions waiting for a lock.", p, row[2]),
    ]


async def database(
    cur: psycopg.AsyncCursor[Any], db: Database, p: str, state: State
) -> list[Metric]:
    now = time.monotonic()
    fresh = state.size is not None and now - state.size[0] < SIZE_EVERY
    await cur.execute(DATABASE_STATS if fresh else DATABASE_STATS_AND_SIZE)
    row = await cur.fetchone()
    assert row is not None
    if not fresh:
        state.size = (now, int(row[5]))
    assert state.size is not None
    out: list[Metric] = []
    for name, doc, v in (
        ("supabase_db_blocks_hit", "Buffer cache hits (pg_stat_database).", row[0]),
        ("supabase_db_blocks_read", "Blocks read from disk (pg_stat_database).", row[1]),
        ("supabase_db_commits", "Committed transactions.", row[2]),
        ("supabase_db_rollbacks", "Rolled back transactions.", row[3]),
        ("supabase_db_deadlocks", "Deadlocks detected.", row[4]),
    ):
        c = CounterMetricFamily(name, doc, labels=["project"])
        c.add_metric([p], v)
        out.append(c)
    out.append(
        gauge(
            "supabase_db_size_bytes",
            "Size of the database on disk (measured at most once a minute).",
            p,
            state.size[1],
        )
    )
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


async def wraparound(
    cur: psycopg.AsyncCursor[Any], db: Database, p: str, state: State
) -> list[Metric]:
    await cur.execute("SELECT max(age(datfrozenxid)) FROM pg_database")
    row = await cur.fetchone()
    assert row is not None
    age = float(row[0])
    return [
        gauge("supabase_db_xid_age", "Oldest unfrozen transaction id age of any database.", p, age),
        gauge(
            "supabase_db_xid_wraparound_remaining_ratio",
            "Share of the 2^31 transaction ids left before wraparound forces a shutdown.",
            p,
            1 - age / XID_LIMIT,
        ),
    ]


async def replication(
    cur: psycopg.AsyncCursor[Any], db: Database, p: str, state: State
) -> list[Metric]:
    await cur.execute(
        "SELECT pg_is_in_recovery(),"
        " CASE WHEN pg_is_in_recovery() THEN EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END"
    )
    row = await cur.fetchone()
    assert row is not None
    out: list[Metric] = [
        gauge("supabase_db_is_replica", "1 on a read replica.", p, 1.0 if row[0] else 0.0)
    ]
    lag = GaugeMetricFamily(
        "supabase_db_replication_lag_seconds",
        "Replay lag: per replica on a primary (pg_stat_replication), or since the last replayed transaction on a replica.",
        labels=["project", "replica"],
    )
    if row[0]:
        lag.add_metric([p, "self"], float(row[1] or 0.0))
    else:
        await cur.execute(
            "SELECT left(COALESCE(NULLIF(application_name, ''), 'unnamed'), 40),"
            " COALESCE(EXTRACT(EPOCH FROM replay_lag), 0) FROM pg_stat_replication LIMIT 20"
        )
        for name, seconds in await cur.fetchall():
            lag.add_metric([p, name], float(seconds))
    out.append(lag)
    return out


async def statements(
    cur: psycopg.AsyncCursor[Any], db: Database, p: str, state: State
) -> list[Metric]:
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
    listed: dict[str, list[Any]] = {}
    everything = (0.0, 0.0, 0.0)
    for why, qid, c, tot, mn, mxv, r in await cur.fetchall():
        if why == "all":
            everything = (float(c), float(tot), float(r))
        else:
            row = listed.setdefault(qid, [qid, c, tot, mn, mxv, r, False, False])
            row[6 if why == "mean" else 7] = True  # listed by mean, by total, or both
    rows_: list[Any] = [*listed.values()]
    rest = (
        everything[0] - sum(float(x[1]) for x in rows_),
        everything[1] - sum(float(x[2]) for x in rows_),
        everything[2] - sum(float(x[5]) for x in rows_),
    )
    rows_.append(
        ["other", max(rest[0], 0.0), max(rest[1], 0.0), None, None, max(rest[2], 0.0), False, False]
    )
    missing = [r[0] for r in rows_ if r[0] != "other" and r[0] not in state.texts]
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
    calls = CounterMetricFamily(
        "supabase_db_statement_calls",
        f"Calls per statement (pg_stat_statements): the top {n} by mean and by total time, the rest as queryid 'other'.",
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
    for qid, c, tot, mn, mxv, r, top_mean, top_total in rows_:
        calls.add_metric([p, qid], float(c))
        total.add_metric([p, qid], float(tot) / 1000)
        rows.add_metric([p, qid], float(r))
        if qid == "other":
            continue
        if qid in state.texts:
            state.texts.move_to_end(qid)  # recently listed: kept longest
        mean.add_metric([p, qid], float(mn) / 1000)
        mx.add_metric([p, qid], float(mxv) / 1000)
        text, tables, cols = state.texts.get(qid, ("", "", ""))
        top = "mean,total" if top_mean and top_total else "mean" if top_mean else "total"
        info.add_metric(
            [p, qid], {"query": text, "tables": tables, "predicate_columns": cols, "top": top}
        )
    return [calls, total, rows, mean, mx, info]


async def tables(cur: psycopg.AsyncCursor[Any], db: Database, p: str, state: State) -> list[Metric]:
    """Vacuum state and missing-index suspects, from one pass over pg_stat_user_tables (with
    thousands of tables, each pass costs a stats lookup per table)."""
    mi = db.missing_index
    await cur.execute(
        "WITH t AS MATERIALIZED (SELECT * FROM pg_stat_user_tables)"
        " SELECT 'sum', NULL, COALESCE(sum(n_dead_tup), 0), COALESCE(sum(n_live_tup), 0),"
        "   COALESCE(max(EXTRACT(EPOCH FROM now() - GREATEST(last_autovacuum, last_vacuum, last_analyze)))"
        "     FILTER (WHERE n_dead_tup > 1000), 0), NULL"
        " FROM t"
        " UNION ALL"
        " (SELECT 'suspect', schemaname || '.' || relname, seq_scan, COALESCE(idx_scan, 0), n_live_tup, seq_tup_read"
        "  FROM t WHERE n_live_tup >= %s AND seq_scan >= %s AND seq_scan > %s * COALESCE(idx_scan, 0)"
        "  ORDER BY seq_tup_read DESC LIMIT %s)",
        (mi.min_rows, mi.min_seq_scans, mi.ratio, mi.max_tables),
    )
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
    out: list[Metric] = [suspects, table_rows]
    for kind, table, a, b, c, _read in await cur.fetchall():
        if kind == "sum":
            out += [
                gauge(
                    "supabase_db_dead_tuples",
                    "Dead rows waiting for vacuum, all user tables.",
                    p,
                    float(a),
                ),
                gauge("supabase_db_live_tuples", "Live rows, all user tables.", p, float(b)),
                gauge(
                    "supabase_db_vacuum_age_seconds",
                    "Longest time since a table with over 1,000 dead rows was last vacuumed.",
                    p,
                    float(c),
                ),
            ]
        else:
            suspects.add_metric([p, table], a / (b + 1))
            table_rows.add_metric([p, table], float(c))
    return out


DEFAULT_ACTIVE_USERS = (
    "SELECT count(*) FILTER (WHERE last_sign_in_at > now() - interval '1 day'),"
    " count(*) FILTER (WHERE last_sign_in_at > now() - interval '30 days') FROM auth.users"
)


async def active_users(
    cur: psycopg.AsyncCursor[Any], db: Database, p: str, state: State
) -> list[Metric]:
    await cur.execute(db.active_users_query or DEFAULT_ACTIVE_USERS)
    row = await cur.fetchone()
    if row is None or len(row) < 2:
        raise psycopg.DataError("active users query must return one row: (day, month)")
    fam = GaugeMetricFamily(
        "supabase_active_users",
        "Users who signed in within the window (1d, 30d), for cost per active user.",
        labels=["project", "window"],
    )
    fam.add_metric([p, "1d"], float(row[0]))
    fam.add_metric([p, "30d"], float(row[1]))
    return [fam]


COLLECTORS: dict[str, Collector] = {
    "connections": connections,
    "activity": activity,
    "database": database,
    "wraparound": wraparound,
    "replication": replication,
    "tables": tables,
    "statements": statements,
    "active_users": active_users,
}
if (
    tuple(COLLECTORS) != COLLECTOR_NAMES
):  # pragma: no cover - a developer's mistake, caught on import
    raise RuntimeError(
        "exporters.supabase.config.COLLECTOR_NAMES must list sql.COLLECTORS in order"
    )
