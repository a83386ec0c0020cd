"""Deployments: DORA-style figures from the recorder's tables, and each deploy on the timeline."""

from __future__ import annotations

from dashboards.common import PROJECT, TAGS
from dashboards.lib import Dashboard, Prom, Sql, stat, table, timeseries

DASHBOARD = Dashboard(
    uid="wsinfra-deployments",
    title="wsinfra / Deployments",
    description="Deploy frequency, change failure rate and time to restore from the recorder's deployment_history and infrastructure_alerts tables; every production deploy is an annotation.",
    tags=[*TAGS, "deployments"],
    time_from="now-7d",
    variables=[PROJECT],
    panels=[
        stat(
            "Production deploys per day",
            "Production deployments per day over the time range (deploy frequency).",
            "none",
            [
                Sql(
                    "SELECT count(*) / GREATEST(EXTRACT(EPOCH FROM ($__timeTo()::timestamptz - $__timeFrom()::timestamptz)) / 86400, 1) AS per_day\n"
                    "FROM deployment_history\n"
                    "WHERE environment = 'production' AND $__timeFilter(deployed_at)"
                )
            ],
            decimals=1,
            new_row="DORA",
        ),
        stat(
            "Change failure rate",
            "Share of finished production deployments that failed or were rolled back over the time range.",
            "percentunit",
            [
                Sql(
                    "SELECT COALESCE(avg(CASE WHEN deployment_status IN ('failed', 'rolled_back') THEN 1.0 ELSE 0.0 END), 0) AS change_failure_rate\n"
                    "FROM deployment_history\n"
                    "WHERE environment = 'production' AND deployment_status <> 'in_progress' AND $__timeFilter(deployed_at)"
                )
            ],
            thresholds=[(None, "green"), (0.15, "orange"), (0.3, "red")],
        ),
        stat(
            "Time to restore (critical alerts)",
            "Mean time from a critical alert firing to its resolution, over the range (0 when none resolved).",
            "s",
            [
                Sql(
                    "SELECT COALESCE(avg(EXTRACT(EPOCH FROM (resolved_at - triggered_at))), 0) AS time_to_restore\n"
                    "FROM infrastructure_alerts\n"
                    "WHERE severity = 'critical' AND resolved_at IS NOT NULL AND $__timeFilter(triggered_at)"
                )
            ],
        ),
        stat(
            "Median build time",
            "Median build duration of successful deployments over the range (from the webhooks).",
            "s",
            [
                Sql(
                    "SELECT COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY build_duration_ms) / 1000.0, 0) AS median_build\n"
                    "FROM deployment_history\n"
                    "WHERE deployment_status = 'success' AND build_duration_ms IS NOT NULL AND $__timeFilter(deployed_at)"
                )
            ],
        ),
        timeseries(
            "Deployments per day by environment and status",
            "Deployments recorded per day.",
            "none",
            [
                Sql(
                    "SELECT $__timeGroupAlias(deployed_at, '1d'), environment || ' ' || deployment_status AS metric, count(*) AS value\n"
                    "FROM deployment_history\n"
                    "WHERE $__timeFilter(deployed_at)\n"
                    "GROUP BY 1, 2\n"
                    "ORDER BY 1",
                    time_series=True,
                )
            ],
            stack=True,
            w=12,
            new_row="Timeline",
        ),
        timeseries(
            "Vercel deployments finished (exporter)",
            "The same events as counted by the Vercel exporter from the REST API, per hour and state.",
            "none",
            [
                Prom(
                    'sum by (target, state) (increase(vercel_deployments_total{project=~"$project"}[1h]))',
                    "{{target}} {{state}}",
                )
            ],
            stack=True,
            w=12,
        ),
        table(
            "Deployments",
            "Every deployment in the range, newest first, with its build time and error.",
            "none",
            [
                Sql(
                    'SELECT deployed_at AS "time", environment, deployment_status AS status, git_branch AS branch,\n'
                    "  left(git_commit_hash, 12) AS commit, round(build_duration_ms / 1000.0) AS build_seconds,\n"
                    "  completed_at, error_message, deployment_url\n"
                    "FROM deployment_history\n"
                    "WHERE $__timeFilter(deployed_at)\n"
                    "ORDER BY deployed_at DESC\n"
                    "LIMIT 200"
                )
            ],
            h=10,
        ),
        table(
            "Critical and error alerts",
            "Alerts the recorder holds for the range, with how long each took to resolve.",
            "none",
            [
                Sql(
                    'SELECT triggered_at AS "time", alert_type AS alert, severity, service_name AS service, region,\n'
                    "  resolved_at, EXTRACT(EPOCH FROM (resolved_at - triggered_at)) AS seconds_to_resolve\n"
                    "FROM infrastructure_alerts\n"
                    "WHERE severity IN ('critical', 'error') AND $__timeFilter(triggered_at)\n"
                    "ORDER BY triggered_at DESC\n"
                    "LIMIT 200"
                )
            ],
            h=10,
        ),
    ],
)
