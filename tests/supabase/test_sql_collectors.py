"""The SQL collectors against a real PostgreSQL with pg_stat_statements preloaded."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from exporters.supabase.app import SupabaseExporter, make_app
from exporters.supabase.config import SupabaseConfig
from exporters.supabase.sql import statement_shape, statement_text
from tests.pg_cluster import Cluster, throwaway_cluster
from tests.supabase.helpers import samples, scrape_text

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster({"shared_preload_libraries": "pg_stat_statements"}) as c:
        with psycopg.connect(c.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute(
                "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int, status text, note text)"
            )
            conn.execute(
                "INSERT INTO orders (customer_id, status, note) "
                "SELECT g % 5000, CASE WHEN g % 7 = 0 THEN 'open' ELSE 'done' END, repeat('x', 50) FROM generate_series(1, 60000) g"
            )
            conn.execute("ANALYZE orders")
            conn.execute("CREATE SCHEMA auth")
            conn.execute(
                "CREATE TABLE auth.users (id uuid PRIMARY KEY, last_sign_in_at timestamptz)"
            )
            conn.execute(
                "INSERT INTO auth.users SELECT gen_random_uuid(), now() - (g || ' hours')::interval FROM generate_series(1, 100) g"
            )
            for i in range(60):
                conn.execute(
                    "SELECT count(*) FROM orders WHERE customer_id = %s AND status = %s",
                    (i, "open"),
                )
        yield c


def config(c: Cluster, **db: Any) -> SupabaseConfig:
    return SupabaseConfig.model_validate(
        {"databases": [{"name": "proj", "conninfo": c.dsn(), "top_statements": 3, **db}]}
    )


async def scrape(cfg: SupabaseConfig) -> str:
    e = SupabaseExporter(cfg)
    try:
        return await scrape_text(e)
    finally:
        await e.aclose()


async def test_every_collector_succeeds_and_names_the_slow_statement(cluster: Cluster) -> None:
    text = await scrape(config(cluster))
    got = samples(text)
    fails = {
        dict(ls)["collector"]
        for (n, ls), v in got.items()
        if n == "supabase_sql_collector_success" and v != 1
    }
    assert not fails
    info = [dict(ls) for (n, ls), _ in got.items() if n == "supabase_db_statement_info"]
    scan = next(i for i in info if "FROM orders WHERE customer_id" in i["query"])
    assert scan["query"] == "SELECT count(*) FROM orders WHERE customer_id = $1 AND status = $2"
    assert scan["tables"] == "orders"
    assert scan["predicate_columns"] == "customer_id,status"
    qid = scan["queryid"]
    assert (
        got[
            (
                "supabase_db_statement_calls_total",
                frozenset({"project": "proj", "queryid": qid}.items()),
            )
        ]
        == 60
    )
    # Bounded: at most top-N by mean plus top-N by total, and the rest as "other".
    qids = {
        dict(ls)["queryid"]
        for (n, ls), _ in got.items()
        if n == "supabase_db_statement_calls_total"
    }
    assert "other" in qids
    assert len(qids) <= 2 * 3 + 1
    suspects = {
        dict(ls)["table"] for (n, ls), _ in got.items() if n == "supabase_db_missing_index_suspect"
    }
    assert suspects == {"public.orders"}
    assert (
        got[("supabase_active_users", frozenset({"project": "proj", "window": "1d"}.items()))]
        == 23  # signed in 1..23 hours ago
    )
    assert (
        got[("supabase_active_users", frozenset({"project": "proj", "window": "30d"}.items()))]
        == 100
    )
    assert got[("supabase_up", frozenset({"project": "proj"}.items()))] == 1


@pytest.mark.usefixtures("cluster")
async def test_output_passes_promtool(cluster: Cluster, promtool: str) -> None:
    text = await scrape(config(cluster))
    res = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()


async def test_a_collector_without_permission_fails_alone(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS monitor")
        conn.execute("CREATE ROLE monitor LOGIN")
        conn.execute("GRANT pg_monitor TO monitor")  # not auth.users: active_users must fail
    caplog.set_level(logging.WARNING)
    text = await scrape(
        config(cluster, conninfo=cluster.dsn().replace("user=postgres", "user=monitor"))
    )
    got = samples(text)
    status = {
        dict(ls)["collector"]: v
        for (n, ls), v in got.items()
        if n == "supabase_sql_collector_success"
    }
    assert status.pop("active_users") == 0
    assert set(status.values()) == {1.0}
    assert any(
        getattr(r, "sqlstate", "") == "42501" for r in caplog.records
    )  # insufficient_privilege


async def test_a_statement_timeout_fails_the_slow_collector_only(cluster: Cluster) -> None:
    # A timeout the collectors cannot meet: each fails on its own, the exporter answers.
    text = await scrape(config(cluster, statement_timeout="1ms", scrape_budget="5s"))
    got = samples(text)
    assert got[("supabase_up", frozenset({"project": "proj"}.items()))] == 1
    status = [v for (n, _), v in got.items() if n == "supabase_sql_collector_success"]
    assert 0 in status


async def test_without_pg_stat_statements_the_rest_still_works() -> None:
    with throwaway_cluster() as c:
        text = await scrape(config(c))
    got = samples(text)
    status = {
        dict(ls)["collector"]: v
        for (n, ls), v in got.items()
        if n == "supabase_sql_collector_success"
    }
    assert status["statements"] == 0
    assert status["connections"] == 1
    assert not [n for (n, _) in got if n.startswith("supabase_db_statement")]


async def test_an_unreachable_database_is_reported_within_the_budget() -> None:
    from compose.processes import free_port

    cfg = SupabaseConfig.model_validate(
        {
            "databases": [
                {
                    "name": "gone",
                    "conninfo": f"host=127.0.0.1 port={free_port()} user=x dbname=x",
                    "statement_timeout": "1s",
                    "scrape_budget": "3s",
                }
            ]
        }
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    text = await scrape(cfg)
    assert loop.time() - t0 < 4
    got = samples(text)
    assert got[("supabase_up", frozenset({"project": "gone"}.items()))] == 0
    assert {v for (n, _), v in got.items() if n == "supabase_sql_collector_success"} == {0.0}


async def test_the_exporter_never_holds_more_connections_than_allowed(cluster: Cluster) -> None:
    e = SupabaseExporter(config(cluster, max_connections=1))
    try:
        await asyncio.gather(*(e.snapshot() for _ in range(5)))
        with psycopg.connect(cluster.dsn()) as conn:
            n = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wsinfra-supabase-exporter'"
            ).fetchone()
        assert n is not None
        assert n[0] <= 1
    finally:
        await e.aclose()


def test_statement_text_and_shape() -> None:
    q = "SELECT o.id\n  FROM public.orders o JOIN customers c ON c.id = o.customer_id\n WHERE o.status = $1 AND c.region IN ($2, $3) AND o.total > $4"
    assert statement_text(q, 40) == "SELECT o.id FROM public.orders o JOIN c…"
    text = statement_text(q, 1000)
    assert statement_shape(text) == ("customers,public.orders", "region,status,total")
    assert statement_shape("UPDATE t SET a = $1 WHERE b = $2") == ("t", "b")
    assert statement_shape("SELECT 1") == ("", "")


async def test_a_full_scrape_produces_exactly_the_declared_series(cluster: Cluster) -> None:
    from tests.supabase.series import SQL_SAMPLE_NAMES as SAMPLE_NAMES

    text = await scrape(config(cluster, size_limit_bytes=8 * 2**30))
    names = {n for (n, _) in samples(text)}
    assert names <= SAMPLE_NAMES, names - SAMPLE_NAMES
    # A primary without replicas has no replication lag to report.
    assert SAMPLE_NAMES - names == {"supabase_db_replication_lag_seconds"}


async def test_metrics_over_http_has_one_supabase_up_per_database(
    cluster: Cluster, aiohttp_client: Any
) -> None:
    cfg = SupabaseConfig.model_validate(
        {
            "databases": [
                {"name": "proj", "conninfo": cluster.dsn()},
                {"name": "copy", "conninfo": cluster.dsn(), "disabled_collectors": ["statements"]},
            ]
        }
    )
    client = await aiohttp_client(make_app(SupabaseExporter(cfg)))
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    # The shared app's unlabelled supabase_up is not served: supabase_up is per database.
    assert text.count("# TYPE supabase_up gauge") == 1
    got = samples(text)
    ups = {k: v for k, v in got.items() if k[0] == "supabase_up"}
    assert ups == {
        ("supabase_up", frozenset({("project", "proj")})): 1.0,
        ("supabase_up", frozenset({("project", "copy")})): 1.0,
    }
    assert ("supabase_scrape_duration_seconds", frozenset()) in got
    assert any(n == "supabase_build_info" for (n, _) in got)
    collectors = {
        dict(ls)["collector"]
        for (n, ls) in got
        if n == "supabase_sql_collector_success" and dict(ls)["project"] == "copy"
    }
    assert "statements" not in collectors, "a disabled collector is left out"
    assert (await client.get("/-/ready")).status == 200
    assert "copy" in await (await client.get("/")).text()


def test_the_password_file_is_read_at_each_new_connection(tmp_path: Any) -> None:
    from common.postgres import connect_kwargs

    pw = tmp_path / "pw"
    pw.write_text("first\n")
    cfg = SupabaseConfig.model_validate(
        {
            "databases": [
                {
                    "name": "p",
                    "conninfo": "host=127.0.0.1 dbname=x user=y",
                    "password_file": str(pw),
                    "statement_timeout": "3s",
                    "max_connections": 3,
                }
            ]
        }
    )
    pg = cfg.databases[0].connection()
    assert (pg.statement_timeout, pg.pool_min, pg.pool_max, pg.acquire_timeout) == (3.0, 0, 3, 8.0)
    assert connect_kwargs(pg, "t")["password"] == "first"
    pw.write_text("second\n")
    assert connect_kwargs(pg, "t")["password"] == "second", "a rotation needs no restart"
    assert connect_kwargs(pg, "t")["connect_timeout"] == 3


def test_the_example_config_is_valid() -> None:
    from common.config import load_config
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "config" / "example" / "supabase.yaml", SupabaseConfig)
    assert cfg.databases[0].size_limit_bytes == 8 * 2**30


def test_config_refuses_passwords_and_unknown_collectors(tmp_path: Any) -> None:
    from common.config import ConfigError, load_config

    bad = tmp_path / "s.yaml"
    bad.write_text(
        "databases:\n"
        "  - {name: a, conninfo: 'host=x password=hunter2', disabled_collectors: [nope]}\n"
        "  - {name: a, conninfo: 'host=y', statement_timeout: 9s, scrape_budget: 8s}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(bad, SupabaseConfig)
    text = str(err.value)
    assert "databases[0].conninfo" in text
    assert "hunter2" not in text
    assert "databases[0].disabled_collectors" in text
    assert "databases[1]" in text


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_costly_collectors_are_read_once_per_interval_and_served_in_between(
    cluster: Cluster,
) -> None:
    from exporters.supabase.scrape import DatabaseScraper

    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS app_users")
        conn.execute("CREATE TABLE app_users (signed_in timestamptz)")
        conn.execute("INSERT INTO app_users VALUES (now()), (now() - interval '3 days')")
    db = config(
        cluster,
        active_users_query="SELECT count(*) FILTER (WHERE signed_in > now() - interval '1 day'),"
        " count(*) FROM app_users",
        cadence={"active_users": {"interval": "1m", "stale_after": "2m"}},
    ).databases[0]
    clock = Clock()
    scraper = DatabaseScraper(db, clock=clock)
    try:
        first = {r.name: r for r in (await scraper.scrape()).results}
        assert all(r.ok and not r.cached and r.age == 0 for r in first.values()), first
        clock.now += 15
        second = {r.name: r for r in (await scraper.scrape()).results}
        cached = {n for n, r in second.items() if r.cached}
        assert cached == {"database_size", "tables", "statements", "active_users"}
        for name in cached:
            # The very rows of the last read, and how old they are.
            assert second[name].rows is first[name].rows
            assert second[name].age == 15
        assert second["connections"].rows is not first["connections"].rows
        # The users' table goes away: the next read fails, the last good rows are served
        # until stale_after, then dropped.
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("DROP TABLE app_users")
        clock.now += 45
        third = {r.name: r for r in (await scraper.scrape()).results}
        assert not third["statements"].cached  # 60 s: read again
        assert third["active_users"].ok is False
        assert third["active_users"].rows is first["active_users"].rows
        clock.now += 75
        fourth = {r.name: r for r in (await scraper.scrape()).results}
        assert fourth["active_users"].rows is None
        assert fourth["active_users"].ok is False
    finally:
        await scraper.close()


async def test_cached_collectors_say_so_in_the_metrics(cluster: Cluster) -> None:
    e = SupabaseExporter(config(cluster))
    try:
        await scrape_text(e)
        got = samples(await scrape_text(e))
    finally:
        await e.aclose()
    cached = {
        dict(ls)["collector"]: v
        for (n, ls), v in got.items()
        if n == "supabase_sql_collector_cached"
    }
    assert cached == {
        "connections": 0,
        "activity": 0,
        "database": 0,
        "database_size": 1,
        "wraparound": 0,
        "replication": 0,
        "tables": 1,
        "statements": 1,
        "active_users": 1,
    }
    # Served from the first scrape's read: still named, still succeeding.
    assert any(n == "supabase_db_statement_info" for (n, _) in got)
    assert {v for (n, _), v in got.items() if n == "supabase_sql_collector_success"} == {1.0}
    ages = {
        dict(ls)["collector"]: v
        for (n, ls), v in got.items()
        if n == "supabase_sql_collector_age_seconds"
    }
    assert ages["connections"] == 0
    assert 0 < ages["statements"] < 60


async def test_scrapes_in_flight_together_share_one_read(cluster: Cluster) -> None:
    from exporters.supabase.scrape import DatabaseScraper

    scraper = DatabaseScraper(config(cluster).databases[0])
    try:
        a, b, c = await asyncio.gather(scraper.scrape(), scraper.scrape(), scraper.scrape())
        assert a is b is c
        assert (await scraper.scrape()) is not a
    finally:
        await scraper.close()


async def test_the_tables_query_agrees_with_pg_stat_user_tables(cluster: Cluster) -> None:
    """query_tables reads the statistics functions behind pg_stat_user_tables directly (a third
    of the cost): the same sums and the same suspects as the view gives."""
    from exporters.supabase.sql import State, query_tables

    db = config(
        cluster, missing_index={"min_rows": 1, "min_seq_scans": 1, "ratio": 0.5, "max_tables": 5}
    ).databases[0]
    mi = db.missing_index
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS noindex (a int)")
        conn.execute("INSERT INTO noindex SELECT generate_series(1, 100)")
        conn.execute("SELECT count(*) FROM noindex WHERE a = 3")
    # One transaction with a statistics snapshot: the view and the query see the same figures.
    async with await psycopg.AsyncConnection.connect(cluster.dsn()) as aconn:
        if aconn.info.server_version >= 150000:  # PostgreSQL 14 snapshots per transaction
            await aconn.execute("SET stats_fetch_consistency = snapshot")
        cur = await aconn.execute(
            "SELECT COALESCE(sum(n_dead_tup), 0), COALESCE(sum(n_live_tup), 0) FROM pg_stat_user_tables"
        )
        view = await cur.fetchone()
        cur = await aconn.execute(
            "SELECT schemaname || '.' || relname, seq_scan, COALESCE(idx_scan, 0), n_live_tup"
            " FROM pg_stat_user_tables WHERE n_live_tup >= %s AND seq_scan >= %s"
            " AND seq_scan > %s * COALESCE(idx_scan, 0) ORDER BY seq_tup_read DESC, 1 LIMIT %s",
            (mi.min_rows, mi.min_seq_scans, mi.ratio, mi.max_tables),
        )
        suspects = await cur.fetchall()
        async with aconn.cursor() as acur:
            got = await query_tables(acur, db, State())
    assert view is not None
    assert (got.dead_tuples, got.live_tuples) == (float(view[0]), float(view[1]))
    assert [(s.table, s.seq_scans, s.idx_scans, s.live_rows) for s in got.suspects] == [
        (t, float(a), float(b), float(c)) for t, a, b, c in suspects
    ]
    assert {"public.orders", "public.noindex"} <= {s.table for s in got.suspects}
