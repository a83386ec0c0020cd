"""The Supabase exporter's golden output: its pure collector rendered from one fixed snapshot
(three databases' query rows, some read this scrape and some served from their slower cadence,
a Management API view, the refresh loop's figures, the backup record's and the /probe refusals)
covering every family it can produce, as /metrics serves it (common.exporter.render plus the per-database
supabase_up), compared with supabase.prom and checked by promtool."""

from __future__ import annotations

import re
from pathlib import Path

from common.upstream import REASONS
from exporters.supabase import management, project_metrics, sql
from exporters.supabase.app import SupabaseExporter, SupabaseSnapshot
from exporters.supabase.backup_record import BackupRecord
from exporters.supabase.config import SupabaseConfig
from exporters.supabase.management import (
    Backups,
    ManagementSnapshot,
    ManagementSource,
    ProjectSnapshot,
)
from exporters.supabase.scrape import CollectorResult, DatabaseSnapshot
from tests.golden import check_golden, render_golden
from tests.supabase.series import (
    MANAGEMENT_SAMPLE_NAMES,
    PROXY_SAMPLE_NAMES,
    RECORD_SAMPLE_NAMES,
    SQL_SAMPLE_NAMES,
)

NOW = 1_780_000_000.0
DAY = 86400.0


def config(tmp: Path) -> SupabaseConfig:
    return SupabaseConfig.model_validate(
        {
            "databases": [
                {
                    "name": "shop",
                    "conninfo": "host=db.shop.example dbname=postgres user=monitor",
                    "size_limit_bytes": 8 * 2**30,
                    "top_statements": 2,
                },
                {
                    "name": "shop-replica",
                    "conninfo": "host=replica.shop.example dbname=postgres user=monitor",
                    "disabled_collectors": ["statements"],
                    "long_transaction": "5m",
                },
                {"name": "gone", "conninfo": "host=gone.example dbname=postgres user=monitor"},
            ],
            "management": {
                "token_file": str(tmp / "token"),
                "projects": [{"ref": "abcdefghijklmnop", "pitr_required": True}],
            },
            "project_metrics": {"keys_dir": str(tmp / "keys")},
            "record": {"conninfo": "host=db.wsinfra.example dbname=wsinfra user=wsinfra"},
        }
    )


def shop(cfg: SupabaseConfig) -> DatabaseSnapshot:
    db = cfg.databases[0]
    states = {s: 0 for s in sql.STATES} | {"active": 3, "idle": 12, "idle in transaction": 1}
    rows: dict[str, object] = {
        "connections": sql.Connections(tuple(sorted({**states, "unknown": 1}.items())), 57),
        "activity": sql.Activity(12.5, 1, 2),
        "database": sql.DatabaseStats(981_234, 1_234, 45_678, 12, 1),
        "database_size": sql.DatabaseSize(3 * 2**30),
        "wraparound": sql.Wraparound(210_000_000.0),
        "replication": sql.Replication(False, (("replica-1", 0.25), ("unnamed", 0.0))),
        "tables": sql.Tables(
            1_500.0,
            250_000.0,
            3_600.0,
            (sql.Suspect("public.orders", 900.0, 9.0, 60_000.0),),
        ),
        "statements": sql.Statements(
            (
                sql.Statement(
                    "-4567890123456789",
                    60.0,
                    30_000.0,
                    500.0,
                    1_200.0,
                    60.0,
                    True,
                    True,
                    "SELECT count(*) FROM orders WHERE customer_id = $1 AND status = $2",
                    "orders",
                    "customer_id,status",
                ),
                sql.Statement(
                    "1234567890",
                    10_000.0,
                    20_000.0,
                    2.0,
                    40.0,
                    10_000.0,
                    False,
                    True,
                    'UPDATE "public"."carts" SET note = $1 WHERE id = $2 AND tag LIKE \'a\\b%\'',
                    "public.carts",
                    "id,tag",
                ),
            ),
            other_calls=5_000.0,
            other_ms=1_500.0,
            other_rows=4_000.0,
        ),
        "active_users": sql.ActiveUsers(23.0, 100.0),
    }
    # The costly collectors on their own cadence: read 45 s ago (active users 200 s ago), their
    # rows served again by this scrape.
    age = {"database_size": 45.0, "tables": 45.0, "statements": 45.0, "active_users": 200.0}
    results = tuple(
        CollectorResult(name, True, (i + 1) / 1000, rows[name], name in age, age.get(name, 0.0))
        for i, name in enumerate(sql.COLLECTORS)
    )
    return DatabaseSnapshot(db, True, 0.0125, results)


def shop_replica(cfg: SupabaseConfig) -> DatabaseSnapshot:
    db = cfg.databases[1]
    ok: dict[str, object] = {
        "connections": sql.Connections(tuple(sorted({s: 0 for s in sql.STATES}.items())), 97),
        "activity": sql.Activity(0.0, 0, 0),
        "database": sql.DatabaseStats(10, 2, 3, 0, 0),
        "database_size": sql.DatabaseSize(2**30),
        "wraparound": sql.Wraparound(2_000_000_000.0),
        "replication": sql.Replication(True, (("self", 2.5),)),
        "tables": sql.Tables(0.0, 0.0, 0.0, ()),
    }
    results = tuple(
        CollectorResult(name, name in ok, 0.002, ok.get(name))
        for name in sql.COLLECTORS
        if name not in db.disabled_collectors
    )  # read this scrape; active_users fails (permission denied); statements is disabled
    return DatabaseSnapshot(db, True, 0.02, results)


def gone(cfg: SupabaseConfig) -> DatabaseSnapshot:
    db = cfg.databases[2]
    results = tuple(CollectorResult(name, False, None) for name in sql.COLLECTORS)
    return DatabaseSnapshot(db, False, 8.0, results)


def counts(**n: int) -> tuple[tuple[str, int], ...]:
    """Backups by status as parse_backups gives them: every known status, then any other."""
    return tuple(sorted({**dict.fromkeys(management.BACKUP_STATES, 0), **n}.items()))


def management_source(cfg: SupabaseConfig) -> ManagementSource:
    assert cfg.management is not None
    assert cfg.record is not None
    # The mirror into backup_status: written an hour ago, its last two writes failed.
    record = BackupRecord(cfg.record, cfg.management.projects, clock=lambda: NOW)
    record.up, record.last_success = False, NOW - 3600
    record.errors.update({"unavailable": 2})
    record.changes.update({"inserted": 9, "updated": 2})
    source = ManagementSource(cfg.management, clock=lambda: NOW, record=record)
    source.latest = ManagementSnapshot(
        (
            ProjectSnapshot(
                "abcdefghijklmnop",
                name="shop",
                region="eu-central-1",
                status="ACTIVE_HEALTHY",
                pitr_required=True,
                backups=Backups(
                    counts=counts(COMPLETED=7, FAILED=1, OTHER=1),
                    last_completed=NOW - 3 * 3600,
                    last_failed=NOW - DAY - 3 * 3600,
                    pitr=True,
                    walg=True,
                    pitr_window=6 * DAY + 21 * 3600,
                    pitr_earliest=NOW - 6 * DAY - 21 * 3600,
                    # The OTHER one has no integer id: not mirrored.
                    invalid=1,
                ),
                services=(
                    ("auth", "ACTIVE_HEALTHY"),
                    ("db", "ACTIVE_HEALTHY"),
                    ("realtime", "COMING_UP"),
                    ("rest", "ACTIVE_HEALTHY"),
                    ("storage", "UNHEALTHY"),
                ),
                refreshed_at=NOW - 30,
            ),
            # Discovered, on the free plan: no backups, PITR off, WAL-G unknown.
            ProjectSnapshot(
                "freeplan00000000",
                name='side "project"',
                region="us-east-1",
                status="ACTIVE_UNHEALTHY",
                backups=Backups(counts=counts(), pitr=False),
                services=(("db", "UNKNOWN"),),
                refreshed_at=NOW - 30,
            ),
            # Not refreshed for longer than stale_after: dropped from the view.
            ProjectSnapshot("staleproject0000", refreshed_at=NOW - 3600),
        )
    )
    stats = source.upstream.stats
    stats.requests.update(
        {
            ("projects", "200"): 12,
            ("backups", "200"): 23,
            ("backups", "429"): 1,
            ("health", "200"): 23,
            ("health", "error"): 1,
        }
    )
    stats.errors.update({"rate_limited": 1, "timeout": 1})
    stats.limit_remaining.update({"projects": 119, "backups": 0, "health": 96})
    source.loop.last_success = NOW - 30
    source.loop.last_duration = 0.75
    return source


def sample_names(text: str) -> set[str]:
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def test_supabase_golden(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    source = management_source(cfg)
    exporter = SupabaseExporter(cfg, management=source)
    try:
        refused = dict.fromkeys(
            ((e, r) for e, reasons in project_metrics.REASONS.items() for r in reasons), 0
        ) | {("probe", "invalid_project"): 3, ("probe", "unknown_project"): 1}
        snapshot = SupabaseSnapshot(
            (shop(cfg), shop_replica(cfg), gone(cfg)),
            management=source.view(),
            refused=tuple(sorted(refused.items())),
        )
        loops = [
            fam
            for prefix, (loop, what) in exporter.loops().items()
            for fam in loop.metrics(prefix, what)
        ]
        text = render_golden(exporter, snapshot, loops)
        # Rendering is pure: the same snapshot gives the same text again.
        again = render_golden(exporter, snapshot, loops)
    finally:
        await exporter.aclose()
    assert text == again
    check_golden("supabase", text)
    names = sample_names(text)
    # Every series the exporter declares is in the golden file, and nothing else.
    assert names == (
        SQL_SAMPLE_NAMES | MANAGEMENT_SAMPLE_NAMES | RECORD_SAMPLE_NAMES | PROXY_SAMPLE_NAMES
    )
    assert text.count("# TYPE supabase_up gauge") == 1
    assert "staleproject0000" not in text
    assert {f'supabase_management_errors_total{{reason="{r}"}}' for r in REASONS} <= {
        line.rsplit(" ", 1)[0] for line in text.splitlines()
    }
