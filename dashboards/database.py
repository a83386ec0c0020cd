"""Database: the Supabase exporter's view of PostgreSQL, backups and health from the
Management API, and the backup record's backups and restore drills (Backups & DR)."""

from __future__ import annotations

from alert_rules.config import prom_duration
from dashboards.common import RULES, TAGS, S, spoken
from dashboards.lib import Dashboard, Panel, Prom, Var, runbook, stat, table, timeseries

DB = 'project=~"$database"'
REF = 'project=~"$supabase_project"'
# The statement recordings are named after their window (supabase.rules: rate<window>).
WINDOW = prom_duration(S.slow_query.window)
DAY = 86400
HORIZON_DAYS = S.disk.horizon_seconds // DAY
HISTORY = prom_duration(S.disk.history)

DATABASE = Var("database", "Database", "label_values(supabase_up, project)")
SUPABASE_PROJECT = Var(
    "supabase_project", "Supabase project", "label_values(supabase_project_info, project)"
)
# The backup record's targets: wsinfra's pg_dump targets and the mirrored `supabase:<ref>`.
BT = 'target=~"$backup_target"'
BACKUP_TARGET = Var("backup_target", "Backup target", "label_values(backup_backups, target)")
BK = RULES.backups
# A daily schedule's limit (Supabase's, 26 h) colours the ages; each wsinfra target's own limit
# is backup_max_age_seconds, which BackupMissing reads.
DAILY = S.backups.max_age_seconds
PASSED = [
    {
        "type": "value",
        "options": {
            "0": {"text": "failed", "color": "red", "index": 0},
            "1": {"text": "passed", "color": "green", "index": 1},
        },
    }
]


def backups_and_dr() -> list[Panel]:
    """The row "Backups & DR": the backup worker's backup_ series, per target."""
    return [
        stat(
            "Last backup age",
            f"Age of each target's newest completed backup (wsinfra's pg_dump targets and the Supabase projects mirrored into the record). Red past {spoken(DAILY)}, a daily schedule's limit; BackupMissing uses each target's own limit (backup_max_age_seconds).",
            "s",
            [
                Prom(
                    f"time() - max by (target) (backup_last_completed_timestamp_seconds{{{BT}}} > 0)",
                    "{{target}}",
                    instant=True,
                )
            ],
            thresholds=[(None, "green"), (DAILY, "red")],
            links=[runbook("BackupMissing"), runbook("BackupFailed")],
            w=8,
            new_row="Backups & DR",
        ),
        stat(
            "Last restore drill",
            "Whether each target's newest finished restore drill passed (schema, row counts, sampled checksums and smoke queries equal to the dump's).",
            "none",
            [
                Prom(
                    f"min by (target, type) (backup_drill_last_passed{{{BT}}})",
                    "{{target}} {{type}}",
                    instant=True,
                )
            ],
            thresholds=[(None, "red"), (1, "green")],
            links=[runbook("RestoreDrillFailed")],
            mappings=PASSED,
            w=8,
        ),
        stat(
            "Last restore drill age",
            f"Time since each target's newest drill finished, passed or failed. Red past {spoken(DAILY)}; RestoreDrillMissing uses each target's own window (backup_drill_window_seconds).",
            "s",
            [
                Prom(
                    f"time() - max by (target, type) (backup_drill_last_timestamp_seconds{{{BT}}} > 0)",
                    "{{target}} {{type}}",
                    instant=True,
                )
            ],
            thresholds=[(None, "green"), (DAILY, "red")],
            links=[runbook("RestoreDrillMissing")],
            w=8,
        ),
        timeseries(
            "RTO against target",
            "Measured RTO of each target's newest passed drill (restore start to verified), and the target's RTO target as a line (the spec's 2 minutes by default). Above the line, a real restore would miss the target.",
            "s",
            [
                Prom(
                    f"max by (target, type) (backup_drill_rto_seconds{{{BT}}})",
                    "{{target}} {{type}}",
                ),
                Prom(
                    f"max by (target) (backup_drill_rto_target_seconds{{{BT}}})",
                    "{{target}} target",
                ),
            ],
            minimum=0,
            links=[runbook("RestoreDrillRtoOverTarget")],
        ),
        timeseries(
            "RPO of the last passed drill",
            "Age of the restored data when each target's newest passed drill started: how much a restore of the newest backup would have lost.",
            "s",
            [
                Prom(
                    f"max by (target, type) (backup_drill_rpo_seconds{{{BT}}})",
                    "{{target}} {{type}}",
                )
            ],
            minimum=0,
        ),
        stat(
            "Backup success rate (30 days)",
            "Completed ÷ (completed + failed) among each target's backups started in the last 30 days. Orange below 100 %, red below 80 %.",
            "percentunit",
            [
                Prom(
                    f"min by (target, method) (backup_success_ratio{{{BT}}})",
                    "{{target}} ({{method}})",
                    instant=True,
                )
            ],
            thresholds=[(None, "red"), (0.8, "orange"), (1, "green")],
            links=[runbook("BackupFailed")],
            w=12,
            h=8,
        ),
        timeseries(
            "Backup size",
            f"Size of each target's newest completed backup. A drop under {BK.size_drop.min_ratio:.0%} of the one before fires BackupSizeDrop.",
            "bytes",
            [
                Prom(
                    f"max by (target, method) (backup_last_size_bytes{{{BT}}})",
                    "{{target}} ({{method}})",
                )
            ],
            minimum=0,
            links=[runbook("BackupSizeDrop")],
        ),
        table(
            "Backups expiring soon",
            f"Per target, soonest first: when its newest completed backup expires. No newer one exists, so after that the target has no backup left: BackupExpiringWithoutNewer pages {spoken(BK.expiring.lead_seconds)} before. Red within that lead, orange within 3 days.",
            "s",
            [
                Prom(
                    f"sort(max by (target, method) (backup_last_completed_expiry_timestamp_seconds{{{BT}}}) - time())",
                    instant=True,
                    table=True,
                )
            ],
            thresholds=[(None, "red"), (BK.expiring.lead_seconds, "orange"), (3 * 86400, "green")],
            hide=["Time"],
            rename={"Value": "newest expires in"},
            links=[runbook("BackupExpiringWithoutNewer")],
            w=12,
        ),
        stat(
            "Oldest retained backup",
            "Age of each target's oldest completed backup not yet removed by retention: how far back a restore can go.",
            "s",
            [
                Prom(
                    f"time() - min by (target) (backup_oldest_retained_timestamp_seconds{{{BT}}} > 0)",
                    "{{target}}",
                    instant=True,
                )
            ],
            w=12,
            h=8,
        ),
    ]


DASHBOARD = Dashboard(
    uid="wsinfra-database",
    title="wsinfra / Database",
    description="PostgreSQL health from the Supabase exporter's SQL collectors (connections, slow statements, cache, replication, vacuum, growth), Supabase backups, PITR and service health from the Management API, and the backup record: last backups, restore drills, RTO against its target, RPO, success rate and expiring backups.",
    tags=[*TAGS, "database", "supabase"],
    variables=[DATABASE, SUPABASE_PROJECT, BACKUP_TARGET],
    panels=[
        stat(
            "Database up",
            "1 if the database answered the exporter's last scrape.",
            "none",
            [Prom(f"min(supabase_up{{{DB}}})", instant=True)],
            thresholds=[(None, "red"), (1, "green")],
            links=[runbook("SupabaseDatabaseDown")],
            new_row="Now",
        ),
        stat(
            "Connections used",
            f"Client connections against max_connections (spec: pool below {S.connections.max_ratio:.0%}).",
            "percentunit",
            [Prom(f"max(project:supabase_db_connections:ratio{{{DB}}})", instant=True)],
            thresholds=[(None, "green"), (S.connections.max_ratio, "red")],
            links=[runbook("SupabaseConnectionsHigh")],
        ),
        stat(
            "Buffer cache hit ratio",
            "Blocks found in shared buffers rather than read from disk, 5-minute rate. Under 99 % on a hot OLTP database usually means too little memory.",
            "percentunit",
            [Prom(f"min(project:supabase_db_cache_hit:ratio_rate5m{{{DB}}})", instant=True)],
            thresholds=[(None, "orange"), (0.99, "green")],
        ),
        stat(
            "Transaction ids left",
            "Share of the 2^31 transaction ids left before wraparound.",
            "percentunit",
            [Prom(f"min(supabase_db_xid_wraparound_remaining_ratio{{{DB}}})", instant=True)],
            thresholds=[
                (None, "red"),
                (S.wraparound.critical_remaining, "orange"),
                (S.wraparound.warning_remaining, "green"),
            ],
            links=[runbook("SupabaseXidWraparoundRisk")],
        ),
        timeseries(
            "Connections by state",
            "Client connections by state: many idle_in_transaction means a client holds transactions open.",
            "none",
            [Prom(f"sum by (state) (supabase_db_connections{{{DB}}})", "{{state}}")],
            stack=True,
            new_row="Load",
        ),
        timeseries(
            "Transactions per second",
            "Commits and rollbacks per second.",
            "ops",
            [
                Prom(f"sum(rate(supabase_db_commits_total{{{DB}}}[$__rate_interval]))", "commits"),
                Prom(
                    f"sum(rate(supabase_db_rollbacks_total{{{DB}}}[$__rate_interval]))", "rollbacks"
                ),
            ],
        ),
        table(
            "Slowest statements now",
            f"Statements by mean time over the last {WINDOW} (time spent / calls, pg_stat_statements), with their normalized text, tables and filter columns. Above {S.slow_query.mean_seconds * 1000:.0f} ms is the spec's limit.",
            "s",
            [
                Prom(
                    f"topk(10, project_queryid:supabase_db_statement_mean_seconds:rate{WINDOW}{{{DB}}})"
                    " * on (project, queryid) group_left (query, tables, predicate_columns)"
                    f" max by (project, queryid, query, tables, predicate_columns) (supabase_db_statement_info{{{DB}}})",
                    instant=True,
                    table=True,
                )
            ],
            thresholds=[(None, "green"), (S.slow_query.mean_seconds, "red")],
            hide=["Time"],
            rename={"Value": "mean"},
            links=[runbook("SupabaseSlowQuery")],
            new_row="Statements and tables",
        ),
        table(
            "Missing-index suspects",
            "Large tables read sequentially far more often than by index: sequential scans per index scan, and their rows.",
            "none",
            [
                Prom(f"supabase_db_missing_index_suspect{{{DB}}}", instant=True, table=True),
                Prom(f"supabase_db_table_rows{{{DB}}}", instant=True, table=True),
            ],
            hide=["Time", "__name__", "job", "instance"],
            rename={"Value #A": "seq scans per index scan", "Value #B": "rows"},
            links=[runbook("SupabaseSlowQuery")],
            w=12,
        ),
        timeseries(
            "Dead tuples and vacuum",
            "Dead rows waiting for vacuum, all user tables: a steady climb means autovacuum cannot keep up.",
            "none",
            [
                Prom(
                    f"sum by (project) (supabase_db_dead_tuples{{{DB}}})", "{{project}} dead tuples"
                )
            ],
            w=12,
        ),
        timeseries(
            "Replication lag",
            "Replay lag per replica (0 where the database has no replicas).",
            "s",
            [
                Prom(
                    f"max by (project, replica) (supabase_db_replication_lag_seconds{{{DB}}})"
                    f" or max by (project) (supabase_db_is_replica{{{DB}}}) * 0",
                    "{{project}} {{replica}}",
                )
            ],
            thresholds=[(None, "green"), (S.replication_lag.seconds, "red")],
            links=[runbook("SupabaseReplicationLag")],
            new_row="Replication and growth",
        ),
        timeseries(
            f"Size and {HORIZON_DAYS}-day forecast",
            f"Database size now and predicted {HORIZON_DAYS} days ahead from the last {HISTORY} of growth.",
            "bytes",
            [
                Prom(f"supabase_db_size_bytes{{{DB}}}", "{{project}} size"),
                Prom(
                    f"predict_linear(supabase_db_size_bytes{{{DB}}}[{HISTORY}], {S.disk.horizon_seconds})",
                    f"{{{{project}}}} in {HORIZON_DAYS} days",
                ),
            ],
            links=[runbook("SupabaseDiskWillFill")],
        ),
        stat(
            "Last completed backup",
            f"Age of the newest completed backup (Supabase takes them daily; alert over {S.backups.max_age_seconds / 3600:g} h).",
            "s",
            [
                Prom(
                    f"time() - max(supabase_backup_last_completed_timestamp_seconds{{{REF}}})",
                    instant=True,
                )
            ],
            thresholds=[(None, "green"), (S.backups.max_age_seconds, "red")],
            links=[runbook("SupabaseBackupStale")],
            new_row="Backups and services (Management API)",
        ),
        stat(
            "PITR window",
            "How far back point-in-time recovery reaches (earliest to latest physical backup).",
            "s",
            [Prom(f"min(supabase_pitr_window_seconds{{{REF}}})", instant=True)],
            links=[runbook("SupabasePitrDisabled")],
        ),
        table(
            "Backups and PITR per project",
            "Per project: PITR on (1) and required by the config, and backups by status.",
            "none",
            [
                Prom(f"supabase_pitr_enabled{{{REF}}}", instant=True, table=True),
                Prom(f"supabase_pitr_required{{{REF}}}", instant=True, table=True),
                Prom(
                    f'sum by (project) (supabase_backups{{{REF}, status="completed"}})',
                    instant=True,
                    table=True,
                ),
            ],
            hide=["Time", "__name__", "job", "instance"],
            rename={
                "Value #A": "PITR on",
                "Value #B": "PITR required",
                "Value #C": "completed backups",
            },
            w=12,
        ),
        table(
            "Service health",
            "Each Supabase service's reported health (1 = ACTIVE_HEALTHY).",
            "none",
            [Prom(f"supabase_service_healthy{{{REF}}}", instant=True, table=True)],
            thresholds=[(None, "red"), (1, "green")],
            hide=["Time", "__name__", "job", "instance"],
            rename={"Value": "healthy"},
            links=[runbook("SupabaseServiceUnhealthy")],
        ),
        table(
            "Exporter collectors",
            "Each SQL collector's last result (0: permission, missing extension or timeout; see the exporter's log).",
            "none",
            [Prom(f"supabase_sql_collector_success{{{DB}}}", instant=True, table=True)],
            thresholds=[(None, "red"), (1, "green")],
            hide=["Time", "__name__", "job", "instance"],
            rename={"Value": "ok"},
            links=[runbook("SupabaseCollectorFailing")],
        ),
        *backups_and_dr(),
    ],
)
