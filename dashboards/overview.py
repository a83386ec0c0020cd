"""Infrastructure overview: the spec's admin dashboard, for the on-call engineer's first look."""

from __future__ import annotations

from dashboards import costs
from dashboards.common import (
    API_STEPS,
    BUDGET,
    CACHE_HIT_RATIO,
    CACHE_STEPS,
    ENVIRONMENT,
    ERROR_STEPS,
    PAGE_STEPS,
    PROBE_REGION,
    PROBE_TIME_STEPS,
    PROJECT,
    SLO_TARGET,
    TAGS,
    V,
    spoken,
)
from dashboards.lib import Dashboard, Prom, Sql, runbook, stat, table, timeseries

ENV = 'environment="$environment", project=~"$project"'

# The recorder's unresolved alerts, not bound to the time range: an alert firing for a week is
# still active. The acknowledger is a user id (the operator API writes auth.uid()); its email
# comes from auth.users (the datasource's role reads it; a role that may not would fail the
# panel, so grant it SELECT on auth.users (id, email)).
ACTIVE_ALERTS_SQL = (
    "SELECT a.alert_title AS title, a.service_name AS service, a.severity,\n"
    "  a.current_metric_value AS value, a.triggered_at AS since,\n"
    "  COALESCE(u.email, a.acknowledged_by::text) AS acknowledged_by\n"
    "FROM infrastructure_alerts AS a\n"
    "LEFT JOIN auth.users AS u ON u.id = a.acknowledged_by\n"
    "WHERE a.resolved_at IS NULL\n"
    "ORDER BY CASE a.severity WHEN 'critical' THEN 0 WHEN 'error' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END,\n"
    "  a.triggered_at DESC\n"
    "LIMIT 100"
)

DASHBOARD = Dashboard(
    uid="wsinfra-overview",
    title="wsinfra / Infrastructure overview",
    description="Overall status, service health, response time, errors, 30-day uptime against the SLO, alerts and deployments.",
    tags=[*TAGS, "overview"],
    variables=[ENVIRONMENT, PROJECT, PROBE_REGION],
    panels=[
        stat(
            "Critical alerts firing",
            "Alerts at severity critical firing now (these page). 0 is green.",
            "none",
            [
                Prom(
                    'count(ALERTS{alertstate="firing", severity="critical"}) or vector(0)',
                    instant=True,
                )
            ],
            thresholds=[(None, "green"), (1, "red")],
            new_row="Status",
        ),
        stat(
            "Errors and warnings firing",
            "Alerts at severity error or warning firing now (Slack #alerts, no page).",
            "none",
            [
                Prom(
                    'count(ALERTS{alertstate="firing", severity=~"error|warning"}) or vector(0)',
                    instant=True,
                )
            ],
            thresholds=[(None, "green"), (1, "orange")],
        ),
        stat(
            "Uptime targets up",
            "Share of uptime targets whose latest probe succeeds from at least one region.",
            "percentunit",
            [
                Prom(
                    "sum(max by (target) (uptime_probe_success)) / count(max by (target) (uptime_probe_success))",
                    instant=True,
                )
            ],
            thresholds=[(None, "red"), (1, "green")],
            links=[runbook("UptimeTargetDown")],
        ),
        stat(
            "Scrape targets up",
            "Share of Prometheus scrape targets (exporters, recorder, Alertmanager) answering.",
            "percentunit",
            [Prom("sum(up) / count(up)", instant=True)],
            thresholds=[(None, "red"), (1, "green")],
        ),
        stat(
            "Vercel error rate",
            f"Server errors among the selected environment's requests, 5-minute rate (spec: under {V.errors.warning_ratio:.0%}).",
            "percentunit",
            [
                Prom(
                    f"sum(project_region:vercel_request_errors:rate5m{{{ENV}}}) / sum(project_region:vercel_requests:rate5m{{{ENV}}})",
                    instant=True,
                )
            ],
            thresholds=ERROR_STEPS,
            links=[runbook("VercelErrorRateHigh")],
            new_row="Service health",
        ),
        stat(
            "Vercel page p95 (all regions)",
            f"Server time of page requests at p95 over all regions (spec: under {V.page_load.p95_seconds} s).",
            "s",
            [
                Prom(
                    f'max(project_kind:vercel_request_duration_seconds:p95_rate5m{{{ENV}, route_kind="page"}})',
                    instant=True,
                )
            ],
            thresholds=PAGE_STEPS,
            links=[runbook("VercelPageLoadSlow")],
        ),
        stat(
            "Vercel API p50 (all regions)",
            f"Median API request time over all regions (spec: under {V.api_latency.p50_seconds * 1000:.0f} ms).",
            "s",
            [
                Prom(
                    f'max(project_kind:vercel_request_duration_seconds:p50_rate5m{{{ENV}, route_kind="api"}})',
                    instant=True,
                )
            ],
            thresholds=API_STEPS,
            links=[runbook("VercelApiLatencyHigh")],
        ),
        stat(
            "Vercel CDN cache hit ratio",
            f"Cacheable requests (static, prerendered) served from Vercel's cache over {spoken(V.cache.window)} (spec: above {V.cache.min_hit_ratio:.0%}).",
            "percentunit",
            [Prom(f"min({CACHE_HIT_RATIO}{{{ENV}}})", instant=True)],
            thresholds=CACHE_STEPS,
            links=[runbook("VercelCacheHitRatioLow")],
        ),
        stat(
            "Database",
            "1 if every database the Supabase exporter watches answered its last scrape.",
            "none",
            [Prom("min(supabase_up)", instant=True)],
            thresholds=[(None, "red"), (1, "green")],
            links=[runbook("SupabaseDatabaseDown")],
        ),
        stat(
            "Active users (30 days)",
            "Users who signed in within 30 days (auth.users), the denominator of cost per active user.",
            "none",
            [Prom('sum(supabase_active_users{window="30d"})', instant=True)],
        ),
        table(
            "Monitoring components",
            "Every scrape target: 1 = answering. The Vercel exporter's vercel_up says whether its deployment data is fresh.",
            "none",
            [Prom("up", instant=True, table=True), Prom("vercel_up", instant=True, table=True)],
            thresholds=[(None, "red"), (1, "green")],
            hide=["Time", "__name__"],
            rename={"Value #A": "scraped", "Value #B": "vercel data fresh"},
            h=7,
        ),
        timeseries(
            "Server response time, all regions",
            "p50, p95 and p99 of server-side request time from the Vercel trace drain, pages and API separately.",
            "s",
            [
                Prom(
                    f"project_kind:vercel_request_duration_seconds:p{q}_rate5m{{{ENV}}}",
                    f"{{{{project}}}} {{{{route_kind}}}} p{q}",
                )
                for q in (50, 95, 99)
            ],
            thresholds=PAGE_STEPS,
            new_row="Response time",
        ),
        timeseries(
            "Page p95 by Vercel region",
            "Server time of page requests at p95 per region: the spec's page-load promise holds per region.",
            "s",
            [
                Prom(
                    f'project_region_kind:vercel_request_duration_seconds:p95_rate5m{{{ENV}, route_kind="page"}}',
                    "{{project}} {{region}}",
                )
            ],
            thresholds=PAGE_STEPS,
            links=[runbook("VercelPageLoadSlow")],
        ),
        timeseries(
            "Probe response time by probe region",
            "Average total probe time per probe region (DNS, connect, TLS, server, transfer), as users there would see it.",
            "s",
            [
                Prom(
                    'region:uptime_probe_duration_seconds:avg{region=~"$region"}',
                    "{{region}}",
                )
            ],
            thresholds=PROBE_TIME_STEPS,
            links=[runbook("UptimeResponseTimeHigh")],
            w=24,
        ),
        timeseries(
            "Error rate by Vercel region",
            "Share of requests ending in 5xx or a crashed function, per region (5-minute rate).",
            "percentunit",
            [
                Prom(
                    f"project_region:vercel_request_errors:ratio_rate5m{{{ENV}}}",
                    "{{project}} {{region}}",
                )
            ],
            thresholds=ERROR_STEPS,
            links=[runbook("VercelErrorRateHigh")],
            new_row="Errors and traffic",
        ),
        timeseries(
            "Requests by status class",
            "Requests per second seen by Vercel's edge (log drain), by HTTP status class.",
            "reqps",
            [
                Prom(
                    f"sum by (status_class) (project_status:vercel_requests:rate5m{{{ENV}}})",
                    "{{status_class}}",
                )
            ],
            stack=True,
        ),
        table(
            "Uptime over 30 days, per target",
            f"Share of successful probes over 30 days (best region) against the {SLO_TARGET:.1%} SLO, and the error budget left.",
            "percentunit",
            [
                Prom("1 - target:uptime_probe_errors:ratio_rate30d", instant=True, table=True),
                Prom("target:uptime_error_budget_remaining:ratio30d", instant=True, table=True),
            ],
            thresholds=[(None, "red"), (SLO_TARGET, "green")],
            hide=["Time"],
            rename={"Value #A": "availability (30d)", "Value #B": "error budget left"},
            links=[runbook("UptimeErrorBudgetBurn")],
            w=16,
            new_row="Uptime against the SLO",
        ),
        stat(
            "Vercel request availability, 30 days",
            f"Production requests that did not fail with a server error over 30 days (SLO {SLO_TARGET:.1%}, budget {BUDGET:.1%}).",
            "percentunit",
            [
                Prom(
                    '1 - max(project:vercel_request_errors:ratio_rate30d{project=~"$project"})',
                    instant=True,
                )
            ],
            thresholds=[(None, "red"), (SLO_TARGET, "green")],
            links=[runbook("VercelErrorBudgetBurn")],
            decimals=3,
            w=8,
            h=8,
        ),
        timeseries(
            "Firing alerts by severity",
            "Alerts firing, by severity (the Watchdog is always one info alert: the pipeline is alive).",
            "none",
            [Prom('count by (severity) (ALERTS{alertstate="firing"})', "{{severity}}")],
            stack=True,
            new_row="Alerts and deployments",
            w=10,
        ),
        table(
            "Recent deployments",
            "Deployments the recorder received from Vercel and GitHub webhooks, newest first.",
            "none",
            [
                Sql(
                    'SELECT deployed_at AS "time", environment, deployment_status AS status, git_branch AS branch,\n'
                    "  left(git_commit_hash, 12) AS commit, round(build_duration_ms / 1000.0) AS build_seconds\n"
                    "FROM deployment_history\n"
                    "WHERE $__timeFilter(deployed_at)\n"
                    "ORDER BY deployed_at DESC\n"
                    "LIMIT 20"
                )
            ],
            w=14,
        ),
        table(
            "Active alerts",
            "Every alert the recorder holds as not resolved (infrastructure_alerts), the most severe "
            "first: its title, service, severity, live value, since when, and who acknowledged it "
            "(the acknowledger's email from auth.users; empty: nobody yet).",
            "none",
            [Sql(ACTIVE_ALERTS_SQL)],
            h=8,
        ),
        *costs.summary("Costs"),
    ],
)
