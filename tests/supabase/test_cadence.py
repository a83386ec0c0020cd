"""The SQL collectors' cadence, without a database: which collectors a scrape reads, and what it
serves for the others (their last good rows, until stale_after)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from exporters.supabase.config import COLLECTOR_NAMES, DEFAULT_CADENCE, Database, SupabaseConfig
from exporters.supabase.scrape import Cadence, CollectorResult

SLOW = {"database_size", "tables", "statements"}  # 60 s by default
EVERY = set(COLLECTOR_NAMES) - SLOW - {"active_users"}  # read on every scrape


def database(**kw: Any) -> Database:
    return Database.model_validate({"name": "p", "conninfo": "host=x dbname=y", **kw})


def read(names: list[str], *, failing: frozenset[str] = frozenset()) -> dict[str, CollectorResult]:
    """What the queries of one scrape return: rows named after the collector, or a failure."""
    return {
        n: CollectorResult(n, n not in failing, 0.01, None if n in failing else f"rows of {n}")
        for n in names
    }


def scrape(c: Cadence, now: float, **kw: Any) -> dict[str, CollectorResult]:
    due = c.due(now)
    return {r.name: r for r in c.settle(now, due, read(due, **kw))}


def test_the_defaults_read_the_costly_views_once_a_minute_and_users_every_five() -> None:
    db = database()
    assert {n: db.interval(n) for n in COLLECTOR_NAMES if db.interval(n)} == DEFAULT_CADENCE
    assert DEFAULT_CADENCE == {
        "database_size": 60.0,
        "tables": 60.0,
        "statements": 60.0,
        "active_users": 300.0,
    }
    assert db.stale_after("statements") == 300.0
    assert db.stale_after("active_users") == 1500.0


def test_fifteen_second_scrapes_read_the_costly_collectors_every_fourth_scrape() -> None:
    c = Cadence(database())
    reads: dict[str, int] = dict.fromkeys(COLLECTOR_NAMES, 0)
    # 20 scrapes: five minutes at 15 s, each a few ms late or early.
    for i in range(20):
        now = 1000.0 + 15 * i + (0.003 if i % 3 else -0.002)
        for name, r in scrape(c, now).items():
            reads[name] += not r.cached
            assert r.rows == f"rows of {name}"
            assert r.ok
            assert r.age == (0.0 if not r.cached else pytest.approx(r.age))
    assert {n: reads[n] for n in SLOW} == dict.fromkeys(SLOW, 5)
    assert reads["active_users"] == 1
    # The next five minutes read it once more, at 300 s.
    assert not scrape(c, 1000.0 + 300)["active_users"].cached
    assert {n: reads[n] for n in EVERY} == dict.fromkeys(EVERY, 20)


def test_cached_rows_say_so_with_their_age_and_latest_duration() -> None:
    c = Cadence(database())
    scrape(c, 100.0)
    got = scrape(c, 130.0)
    assert got["statements"] == CollectorResult(
        "statements", True, 0.01, "rows of statements", True, 30.0
    )
    assert got["connections"] == CollectorResult(
        "connections", True, 0.01, "rows of connections", False, 0.0
    )


def test_a_failed_refresh_serves_the_last_good_rows_until_stale_after_then_drops_them() -> None:
    c = Cadence(database(cadence={"statements": {"interval": "60s", "stale_after": "150s"}}))
    scrape(c, 0.0)
    scrape(c, 15.0)
    bad = frozenset({"statements", "connections"})
    got = scrape(c, 60.0, failing=bad)
    # The refresh failed: it says so, and the rows of the read at 0 s are still served.
    assert got["statements"] == CollectorResult(
        "statements", False, 0.01, "rows of statements", False, 60.0
    )
    # A collector read on every scrape has nothing older to serve.
    assert got["connections"].rows is None
    # Not retried before its interval: the failure stands, the old rows age.
    got = scrape(c, 75.0, failing=bad)
    assert got["statements"] == CollectorResult(
        "statements", False, 0.01, "rows of statements", True, 75.0
    )
    for t in (90.0, 105.0, 120.0, 135.0):  # retried at 120 s, failed again
        got = scrape(c, t, failing=bad)
        assert got["statements"].rows == "rows of statements"
        assert got["statements"].cached == (t != 120.0)
    got = scrape(c, 150.0, failing=bad)
    assert got["statements"].rows == "rows of statements"  # 150 s old: still within
    got = scrape(c, 165.0, failing=bad)  # 165 s old: past stale_after, dropped
    assert got["statements"] == CollectorResult("statements", False, 0.01, None, True, 165.0)
    got = scrape(c, 180.0)  # read again
    assert got["statements"] == CollectorResult(
        "statements", True, 0.01, "rows of statements", False, 0.0
    )


def test_the_read_falls_on_the_scrape_nearest_its_interval() -> None:
    # 25 s scrapes: a 60 s interval reads at 50 s (10 s early) rather than 75 s (15 s late).
    c = Cadence(database())
    reads = [t for t in range(0, 400, 25) if not scrape(c, float(t))["statements"].cached]
    assert reads == [0, 50, 100, 150, 200, 250, 300, 350]
    # A scrape long after the last: due however the scrapes were spaced before.
    c = Cadence(database())
    scrape(c, 0.0)
    assert "statements" in c.due(600.0)


def test_a_collector_that_never_ran_is_due_again_on_the_next_scrape() -> None:
    c = Cadence(database())
    due = c.due(0.0)
    # The connection was gone: nothing ran.
    got = {r.name: r for r in c.settle(0.0, due, {})}
    assert got["statements"] == CollectorResult("statements", False, None, None, False, 0.0)
    assert "statements" in c.due(15.0)


def test_zero_reads_on_every_scrape_and_disabled_collectors_are_left_out() -> None:
    c = Cadence(
        database(cadence={"statements": {"interval": "0s"}}, disabled_collectors=["tables"])
    )
    scrape(c, 0.0)
    got = scrape(c, 15.0)
    assert not got["statements"].cached
    assert "tables" not in got
    assert got["database_size"].cached


@pytest.mark.parametrize(
    ("cadence", "error"),
    [
        ({"statement": {"interval": "1m"}}, "unknown collectors"),
        ({"statements": {"interval": "1m", "stale_after": "1m"}}, "must be longer than"),
        ({"statements": {"interval": "10m"}, "tables": {"stale_after": "30s"}}, "tables"),
        ({"statements": {"interval": 60}}, "duration"),
        ({"statements": {"every": "60s"}}, "every"),
    ],
)
def test_the_cadence_config_is_checked(cadence: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        SupabaseConfig.model_validate(
            {"databases": [{"name": "p", "conninfo": "host=x", "cadence": cadence}]}
        )


def test_a_partial_cadence_keeps_the_collectors_defaults() -> None:
    db = database(
        cadence={"statements": {"stale_after": "10m"}, "active_users": {"interval": "1m"}}
    )
    assert (db.interval("statements"), db.stale_after("statements")) == (60.0, 600.0)
    assert (db.interval("active_users"), db.stale_after("active_users")) == (60.0, 300.0)
    assert db.interval("connections") == 0.0
