"""The drill's comparisons, without a database: what counts as the same schema object, and what
each check reports when something differs."""

from __future__ import annotations

from backups.drill import compare_counts, compare_files, compare_schema
from backups.inventory import normalize


def test_a_restored_varchar_in_list_is_the_same_constraint() -> None:
    source = "CHECK (((tier)::text = ANY ((ARRAY['free'::character varying, 'pro'::character varying])::text[])))"
    restored = "CHECK (((tier)::text = ANY (ARRAY[('free'::character varying)::text, ('pro'::character varying)::text])))"
    assert normalize(source) == normalize(restored)


def test_a_different_value_or_column_is_not() -> None:
    base = "CHECK (((tier)::text = ANY (ARRAY['free'::text, 'pro'::text])))"
    assert normalize(base) != normalize(base.replace("'pro'", "'team'"))
    assert normalize(base) != normalize(base.replace("tier", "plan"))
    assert normalize("CHECK ((balance >= (0)::numeric))") != normalize(
        "CHECK ((balance > (0)::numeric))"
    )
    ts = "CREATE INDEX i ON public.t USING btree (at) WHERE (at > '2026-01-01 00:00:00+00'::timestamp with time zone)"
    assert normalize(ts) == "CREATEINDEXiONpublic.tUSINGbtreeatWHEREat>'2026-01-0100:00:00+00'"


def test_schema_differences_are_named() -> None:
    want = {"table public.a": "x", "index public.a_pkey": "y", "policy public.a.p": "z"}
    got = {"table public.a": "x", "index public.a_pkey": "other", "function public.f()": "w"}
    check = compare_schema(want, got)
    assert check["ok"] is False
    assert check["detail"] == {
        "missing": ["policy public.a.p"],
        "extra": ["function public.f()"],
        "changed": ["index public.a_pkey"],
        "differ": 3,
    }
    assert compare_schema(want, dict(want)) == {
        "check": "schema",
        "ok": True,
        "detail": {"objects": 3},
    }


def test_counts_and_files() -> None:
    bad = compare_counts(
        {"public.a": 10, "public.b": 5}, {"public.a": 10, "public.b": 4, "public.c": 0}
    )
    assert bad["detail"] == {
        "differ": 2,
        "tables": {
            "public.b": {"expected": 5, "restored": 4},
            "public.c": {"expected": None, "restored": 0},
        },
    }
    files = {"toc.dat": {"sha256": "aa", "bytes": 1}, "3001.dat.gz": {"sha256": "bb", "bytes": 2}}
    assert compare_files({"files": files}, files)["ok"] is True
    broken = compare_files({"files": files}, {"toc.dat": {"sha256": "aa", "bytes": 1}})
    assert broken["detail"] == {"differ": 1, "files": ["3001.dat.gz"]}
    assert compare_files({}, files)["ok"] is False  # a manifest listing nothing proves nothing
