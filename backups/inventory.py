"""What a database holds, in a form two databases can be compared by: the schema objects (tables
and their columns, indexes, constraints, policies, functions, triggers, views, sequences,
extensions) each with a digest of its definition, every table's row count, and sampled rows'
checksums found again by primary key.

Taken inside the dump's snapshot (the same transaction pg_dump's --snapshot reads), so it says
exactly what the backup holds; taken again on the restored copy, a drill compares the two.
"""

# The catalogue queries below are assembled from this module's constants only (no input).
# ruff: noqa: S608
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

# Row text (and so its checksum) depends on these settings: both sides use the same.
SESSION = (
    "SET DateStyle = 'ISO, YMD'",
    "SET TimeZone = 'UTC'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
)

_USER_NS = """n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'"""
_NOT_EXT = """NOT EXISTS (SELECT 1 FROM pg_depend d
    WHERE d.classid = %s::regclass AND d.objid = {oid} AND d.deptype = 'e')"""

# (kind, SQL returning (name, definition)) for every kind of schema object compared.
_OBJECTS: tuple[tuple[str, str], ...] = (
    (
        "table",
        f"""
        SELECT n.nspname || '.' || c.relname,
               c.relkind::text || ' rls=' || c.relrowsecurity::text || ' ' || coalesce((
                 SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                        || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ', '
                        ORDER BY a.attnum)
                 FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'f') AND {_USER_NS}
          AND {_NOT_EXT.format(oid="c.oid") % "'pg_class'"}
        """,
    ),
    (
        "view",
        f"""
        SELECT n.nspname || '.' || c.relname, c.relkind::text || ' ' || pg_get_viewdef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND {_USER_NS}
          AND {_NOT_EXT.format(oid="c.oid") % "'pg_class'"}
        """,
    ),
    (
        "sequence",
        f"""
        SELECT n.nspname || '.' || c.relname, format_type(s.seqtypid, NULL) || ' ' || s.seqincrement::text
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_sequence s ON s.seqrelid = c.oid
        WHERE {_USER_NS} AND {_NOT_EXT.format(oid="c.oid") % "'pg_class'"}
        """,
    ),
    (
        "index",
        f"""
        SELECT n.nspname || '.' || c.relname, pg_get_indexdef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('i', 'I') AND {_USER_NS}
          AND {_NOT_EXT.format(oid="c.oid") % "'pg_class'"}
        """,
    ),
    (
        "constraint",
        f"""
        SELECT n.nspname || '.' || r.relname || '.' || con.conname, pg_get_constraintdef(con.oid)
        FROM pg_constraint con JOIN pg_class r ON r.oid = con.conrelid
        JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE {_USER_NS} AND {_NOT_EXT.format(oid="r.oid") % "'pg_class'"}
        """,
    ),
    (
        "policy",
        f"""
        SELECT n.nspname || '.' || r.relname || '.' || p.polname,
               p.polcmd::text || ' ' || p.polpermissive::text || ' ' || coalesce((
                 SELECT string_agg(CASE WHEN x = 0 THEN 'public' ELSE pg_get_userbyid(x) END,
                                   ',' ORDER BY 1)
                 FROM unnest(p.polroles) AS x), '')
               || ' using ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
               || ' check ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
        FROM pg_policy p JOIN pg_class r ON r.oid = p.polrelid
        JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE {_USER_NS}
        """,
    ),
    (
        "function",
        f"""
        SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid)
               || ')', pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prokind IN ('f', 'p') AND {_USER_NS}
          AND {_NOT_EXT.format(oid="p.oid") % "'pg_proc'"}
        """,
    ),
    (
        "trigger",
        f"""
        SELECT n.nspname || '.' || r.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE NOT t.tgisinternal AND {_USER_NS}
        """,
    ),
    ("extension", "SELECT extname, extname FROM pg_extension"),
)


# PostgreSQL does not deparse every expression the same after a dump and restore: a varchar
# IN-list's CHECK reads `ARRAY['a'::character varying]::text[]` in the source and
# `ARRAY[('a'::character varying)::text]` once restored. Definitions are compared without casts,
# parentheses and whitespace: what is left still names every column, value and operator.
_CAST = re.compile(
    r"::(?:character varying|double precision|bit varying|timestamp with(?:out)? time zone"
    r'|time with(?:out)? time zone|"[^"]+"|[a-z_][a-z0-9_.]*)(?:\(\d+(?:,\s*\d+)?\))?(?:\[\])*'
)
_NOISE = re.compile(r"[()\s]+")


def normalize(definition: str) -> str:
    return _NOISE.sub("", _CAST.sub("", definition))


# How a manifest's schema digests were made: 1, the definitions as printed (manifests written
# before 2026-11-30); 2, normalized. A drill digests the restored copy the manifest's way, so an
# older backup stays verifiable.
SCHEMA_DIGEST = 2


def _digest(text: str, version: int = SCHEMA_DIGEST) -> str:
    raw = normalize(text) if version >= 2 else text
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class TableInfo:
    name: str  # schema.table, as the catalogue spells it
    schema: str
    table: str
    pk: tuple[str, ...]
    pk_types: tuple[str, ...]
    reltuples: float


async def prepare_session(conn: psycopg.AsyncConnection[Any]) -> None:
    for stmt in SESSION:
        await conn.execute(stmt)


async def schema_objects(
    conn: psycopg.AsyncConnection[Any], digest: int = SCHEMA_DIGEST
) -> dict[str, str]:
    """{"kind name": digest of its definition} for every user schema object."""
    out: dict[str, str] = {}
    for kind, query in _OBJECTS:
        cur = await conn.execute(query)  # built from constants only
        for name, definition in await cur.fetchall():
            out[f"{kind} {name}"] = _digest(str(definition), digest)
    return out


async def roles(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Roles a restore needs to exist (owners, grantees, policies' roles): every role that is
    not PostgreSQL's own."""
    cur = await conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY rolname"
    )
    return [r[0] for r in await cur.fetchall()]


async def tables(conn: psycopg.AsyncConnection[Any]) -> list[TableInfo]:
    cur = await conn.execute(
        f"""
        SELECT n.nspname, c.relname, c.reltuples,
               coalesce(array_agg(a.attname ORDER BY k.i) FILTER (WHERE a.attname IS NOT NULL),
                        '{{}}'),
               coalesce(array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.i)
                        FILTER (WHERE a.attname IS NOT NULL), '{{}}')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_index x ON x.indrelid = c.oid AND x.indisprimary
        LEFT JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, i) ON true
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE c.relkind = 'r' AND {_USER_NS}
          AND {_NOT_EXT.format(oid="c.oid") % "'pg_class'"}
        GROUP BY n.nspname, c.relname, c.reltuples
        ORDER BY 1, 2
        """
    )
    return [
        TableInfo(f"{s}.{t}", s, t, tuple(pk), tuple(types), float(rt))
        for s, t, rt, pk, types in await cur.fetchall()
    ]


def _ident(t: TableInfo) -> sql.Composable:
    return sql.Identifier(t.schema, t.table)


async def row_count(conn: psycopg.AsyncConnection[Any], t: TableInfo) -> int:
    cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_ident(t)))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def sample(
    conn: psycopg.AsyncConnection[Any], t: TableInfo, n: int, rows: int
) -> list[list[str]]:
    """Up to `n` rows picked at random: [primary key values as text..., md5 of the row]."""
    if n <= 0 or not t.pk or rows == 0:
        return []
    # Enough of a Bernoulli sample to find n rows, from the exact count just taken.
    pct = min(100.0, max(0.001, 100.0 * n * 4 / rows))
    pk = sql.SQL(", ").join(sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in t.pk)
    cur = await conn.execute(
        sql.SQL(
            "SELECT ARRAY[{}], md5(t::text) FROM {} t TABLESAMPLE BERNOULLI ({}) LIMIT {}"
        ).format(pk, _ident(t), sql.Literal(pct), sql.Literal(n))
    )
    return [[*map(str, key), digest] for key, digest in await cur.fetchall()]


async def sampled_digests(
    conn: psycopg.AsyncConnection[Any], t: TableInfo, samples: list[list[str]]
) -> dict[tuple[str, ...], str]:
    """The restored rows with these primary keys: {key: md5 of the row} (missing keys absent)."""
    if not samples or not t.pk:
        return {}
    width = len(t.pk)
    columns = [[s[i] for s in samples] for i in range(width)]
    names = [sql.Identifier(f"k{i}") for i in range(width)]
    cast = sql.SQL(", ").join(
        sql.SQL("u.{}::{}").format(names[i], sql.SQL(t.pk_types[i])) for i in range(width)
    )
    keys = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in t.pk)
    text_key = sql.SQL(", ").join(sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in t.pk)
    query = sql.SQL(
        "SELECT ARRAY[{text_key}], md5(t::text) FROM {table} t "
        "WHERE ({keys}) IN (SELECT {cast} FROM unnest({unnest}) AS u({names}))"
    ).format(
        text_key=text_key,
        table=_ident(t),
        keys=keys,
        cast=cast,
        unnest=sql.SQL(", ").join(
            sql.SQL("{}::text[]").format(sql.Placeholder()) for _ in range(width)
        ),
        names=sql.SQL(", ").join(names),
    )
    cur = await conn.execute(query, columns)
    return {tuple(map(str, key)): digest for key, digest in await cur.fetchall()}


async def database_size(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT pg_database_size(current_database())")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def take(conn: psycopg.AsyncConnection[Any], sample_rows: int) -> dict[str, Any]:
    """The inventory of the database `conn` is in, as of its transaction's snapshot."""
    counts: dict[str, int] = {}
    samples: dict[str, dict[str, Any]] = {}
    for t in await tables(conn):
        n = await row_count(conn, t)
        counts[t.name] = n
        picked = await sample(conn, t, sample_rows, n)
        if picked:
            samples[t.name] = {"pk": list(t.pk), "pk_types": list(t.pk_types), "rows": picked}
    cur = await conn.execute("SHOW server_version_num")
    version = await cur.fetchone()
    return {
        "server_version_num": int(version[0]) if version else 0,
        "database_size_bytes": await database_size(conn),
        "roles": await roles(conn),
        "schema_objects": await schema_objects(conn),
        "schema_digest": SCHEMA_DIGEST,
        "row_counts": counts,
        "samples": samples,
    }
