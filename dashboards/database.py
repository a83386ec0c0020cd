"""Database: the Supabase exporter's view of PostgreSQL, and backups and health from the
Management API."""

from __future__ import annotations

from alert_rules.config import prom_duration
from dashboards.common import TAGS, S
from dashboards.lib import Dashboard, Prom, Var, runbook, stat, table, timeseries

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

DASHBOARD = Dashboard(
    uid="wsinfra-database",
    title="wsinfra / Database",
    description="PostgreSQL health from the Supabase exporter's SQL collectors (connections, slow statements, cache, replication, vacuum, growth) and Supabase backups, PITR and service health from the Management API.",
    tags=[*TAGS, "database", "supabase"],
    variables=[DATABASE, SUPABASE_PROJECT],
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
    ],
)
