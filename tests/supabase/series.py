"""The series each side of the Supabase exporter produces, as the tests check them against a
live scrape; the golden file tests/golden/supabase.prom must hold exactly their union."""

from __future__ import annotations

# Every sample name the SQL side can produce; the live tests check that a full scrape
# produces exactly these.
SQL_SAMPLE_NAMES = frozenset(
    {
        "supabase_build_info",
        "supabase_up",
        "supabase_scrape_duration_seconds",
        "supabase_sql_scrape_duration_seconds",
        "supabase_sql_collector_success",
        "supabase_sql_collector_duration_seconds",
        "supabase_sql_collector_cached",
        "supabase_sql_collector_age_seconds",
        "supabase_db_connections",
        "supabase_db_max_connections",
        "supabase_db_oldest_transaction_seconds",
        "supabase_db_long_transactions",
        "supabase_db_blocked_sessions",
        "supabase_db_blocks_hit_total",
        "supabase_db_blocks_read_total",
        "supabase_db_commits_total",
        "supabase_db_rollbacks_total",
        "supabase_db_deadlocks_total",
        "supabase_db_size_bytes",
        "supabase_db_size_limit_bytes",
        "supabase_db_xid_age",
        "supabase_db_xid_wraparound_remaining_ratio",
        "supabase_db_is_replica",
        "supabase_db_replication_lag_seconds",
        "supabase_db_dead_tuples",
        "supabase_db_live_tuples",
        "supabase_db_vacuum_age_seconds",
        "supabase_db_statement_calls_total",
        "supabase_db_statement_seconds_total",
        "supabase_db_statement_rows_total",
        "supabase_db_statement_mean_seconds",
        "supabase_db_statement_max_seconds",
        "supabase_db_statement_info",
        "supabase_db_missing_index_suspect",
        "supabase_db_table_rows",
        "supabase_active_users",
    }
)

# Every sample name the Management API side can produce (checked against a live refresh).
MANAGEMENT_SAMPLE_NAMES = frozenset(
    {
        "supabase_management_up",
        "supabase_management_last_success_timestamp_seconds",
        "supabase_management_refresh_duration_seconds",
        "supabase_management_requests_total",
        "supabase_management_errors_total",
        "supabase_management_rate_limit_remaining",
        "supabase_project_info",
        "supabase_backups",
        "supabase_backup_last_completed_timestamp_seconds",
        "supabase_backup_last_failed_timestamp_seconds",
        "supabase_pitr_enabled",
        "supabase_walg_enabled",
        "supabase_pitr_window_seconds",
        "supabase_pitr_earliest_timestamp_seconds",
        "supabase_pitr_required",
        "supabase_service_healthy",
        "supabase_service_status",
    }
)

# Beside those, with `record:` (the mirror into backup_status), once a write was tried.
RECORD_SAMPLE_NAMES = frozenset(
    {
        "supabase_backup_record_up",
        "supabase_backup_record_last_success_timestamp_seconds",
        "supabase_backup_record_errors_total",
        "supabase_backup_record_changes_total",
        "supabase_backup_record_skipped",
    }
)

# On /metrics (where project_metrics is configured).
PROXY_SAMPLE_NAMES = frozenset({"supabase_project_metrics_bad_requests_total"})

# After Supabase's own series on each /probe.
PROBE_SAMPLE_NAMES = frozenset(
    {"supabase_project_metrics_up", "supabase_project_metrics_duration_seconds"}
)
