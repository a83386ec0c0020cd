"""Vercel: deployments and build times, request latency and errors by region, cache, Web Vitals."""

from __future__ import annotations

from dashboards.common import (
    CACHE_HIT_RATIO,
    CACHE_STEPS,
    ENVIRONMENT,
    ERROR_STEPS,
    PAGE_STEPS,
    PROJECT,
    TAGS,
    VERCEL_REGION,
    V,
    spoken,
)
from dashboards.lib import Dashboard, Prom, runbook, stat, table, timeseries

SEL = 'environment="$environment", project=~"$project", region=~"$vercel_region"'
P = 'project=~"$project"'
# Web Vitals of the selected environment only: a preview's page loads are not production's.
PE = 'environment="$environment", project=~"$project"'

DASHBOARD = Dashboard(
    uid="wsinfra-vercel",
    title="wsinfra / Vercel",
    description="Deployments and build times from the Vercel REST API; request latency, errors and cache from the log and trace drains; Core Web Vitals from Speed Insights.",
    tags=[*TAGS, "vercel"],
    variables=[ENVIRONMENT, PROJECT, VERCEL_REGION],
    panels=[
        table(
            "Production now",
            "The newest ready production deployment per project (commit, branch), from the exporter's last successful API refresh.",
            "none",
            [Prom(f"vercel_production_deployment_info{{{P}}}", instant=True, table=True)],
            hide=["Time", "__name__", "Value", "job"],
            w=12,
            h=5,
            new_row="Deployments",
        ),
        stat(
            "Deployments in progress",
            "Deployments queued or building now.",
            "none",
            [Prom(f"sum(vercel_deployments_in_progress{{{P}}})", instant=True)],
            w=4,
            h=5,
        ),
        stat(
            "Failed production deployments (range)",
            "Production deployments that ended in ERROR within the dashboard's time range.",
            "none",
            [
                Prom(
                    f'sum(increase(vercel_deployments_total{{{P}, target="production", state="error"}}[$__range]))',
                    instant=True,
                )
            ],
            thresholds=[(None, "green"), (1, "red")],
            links=[runbook("VercelProductionDeploymentFailed")],
            decimals=0,
            w=4,
            h=5,
        ),
        stat(
            "Since the last production deployment",
            "Time since the newest production deployment became ready.",
            "s",
            [
                Prom(
                    f'time() - max(vercel_deployment_last_ready_timestamp_seconds{{{P}, target="production"}})',
                    instant=True,
                )
            ],
            w=4,
            h=5,
        ),
        timeseries(
            "Deployments finished, by state",
            "Deployments reaching a final state per hour, by target and state (counted once each).",
            "none",
            [
                Prom(
                    f"sum by (target, state) (increase(vercel_deployments_total{{{P}}}[1h]))",
                    "{{target}} {{state}}",
                )
            ],
            stack=True,
        ),
        timeseries(
            "Build time, median and p90",
            "Build duration of ready deployments (ready - buildingAt) over the last 6 hours, per target.",
            "s",
            [
                Prom(
                    f"histogram_quantile({q}, sum by (le, target) (increase(vercel_deployment_build_duration_seconds_bucket{{{P}}}[6h])))",
                    f"{{{{target}}}} p{int(q * 100)}",
                )
                for q in (0.5, 0.9)
            ],
            links=[runbook("VercelBuildTimeRegression")],
        ),
        timeseries(
            "Request latency by region, p50 / p95 / p99",
            "Server-side request time per region from the trace drain, pages and API separately.",
            "s",
            [
                Prom(
                    f"project_region_kind:vercel_request_duration_seconds:p{q}_rate5m{{{SEL}}}",
                    f"{{{{region}}}} {{{{route_kind}}}} p{q}",
                )
                for q in (50, 95, 99)
            ],
            thresholds=PAGE_STEPS,
            links=[runbook("VercelPageLoadSlow"), runbook("VercelApiLatencyHigh")],
            w=24,
            new_row="Requests",
        ),
        timeseries(
            "Requests per second by region",
            "Client requests seen by Vercel's edge (log drain), scaled up by the drain's sampling rate.",
            "reqps",
            [Prom("project_region:vercel_requests:rate5m{" + SEL + "}", "{{project}} {{region}}")],
        ),
        timeseries(
            "Error rate by region",
            "Share of requests ending in 5xx or a crashed function.",
            "percentunit",
            [
                Prom(
                    f"project_region:vercel_request_errors:ratio_rate5m{{{SEL}}}",
                    "{{project}} {{region}}",
                )
            ],
            thresholds=ERROR_STEPS,
            links=[runbook("VercelErrorRateHigh")],
        ),
        timeseries(
            "CDN cache hit ratio by region",
            f"Cacheable requests (static and prerendered) served from Vercel's cache, over {spoken(V.cache.window)}.",
            "percentunit",
            [
                Prom(
                    f"{CACHE_HIT_RATIO}{{{SEL}}}",
                    "{{project}} {{region}}",
                )
            ],
            thresholds=CACHE_STEPS,
            links=[runbook("VercelCacheHitRatioLow")],
        ),
        timeseries(
            "Requests by cache status",
            "Requests per second by Vercel cache status (HIT, MISS, STALE, BYPASS, PRERENDER, REVALIDATED, none).",
            "reqps",
            [
                Prom(
                    f"sum by (cache) (rate(vercel_requests_total{{{SEL}}}[$__rate_interval]))",
                    "{{cache}}",
                )
            ],
            stack=True,
        ),
        timeseries(
            "Web Vitals p75",
            "75th percentile of LCP, FCP, INP and TTFB measured in visitors' browsers (Speed Insights) on the selected environment's deployments, over 30 minutes. Google's 'good': LCP 2.5 s, FCP 1.8 s, INP 200 ms, TTFB 800 ms.",
            "s",
            [
                Prom(
                    f"project_metric:vercel_web_vital_seconds:p75_rate30m{{{PE}}}",
                    "{{project}} {{metric}}",
                )
            ],
            new_row="Core Web Vitals",
        ),
        timeseries(
            "LCP p75 by continent",
            "Largest Contentful Paint at p75 per visitor continent, over 30 minutes.",
            "s",
            [
                Prom(
                    f'project_geo_metric:vercel_web_vital_seconds:p75_rate30m{{{PE}, metric="LCP"}}',
                    "{{project}} {{geo}}",
                )
            ],
            thresholds=[(None, "green"), (2.5, "orange"), (4, "red")],
        ),
        stat(
            "CLS p75",
            "Cumulative Layout Shift at p75 over 30 minutes (good under 0.1, poor over 0.25).",
            "none",
            [Prom(f"max(project:vercel_web_vital_cls:p75_rate30m{{{PE}}})", instant=True)],
            thresholds=[(None, "green"), (0.1, "orange"), (0.25, "red")],
            decimals=3,
            w=6,
            new_row="Exporter health",
        ),
        timeseries(
            "Drain deliveries by outcome",
            "Deliveries per second per drain: accepted, or refused (bad_signature, malformed, too_large, unsupported_media_type, bad_string, out_of_range).",
            "reqps",
            [
                Prom(
                    "sum by (drain, outcome) (rate(vercel_drain_deliveries_total[$__rate_interval]))",
                    "{{drain}} {{outcome}}",
                )
            ],
            links=[runbook("VercelDrainSilent")],
            w=9,
        ),
        timeseries(
            "Vercel API requests by code",
            "REST API requests per second by HTTP code ('error' = no answer), and the rate-limit budget left.",
            "reqps",
            [
                Prom(
                    "sum by (code) (rate(vercel_api_requests_total[$__rate_interval]))",
                    "HTTP {{code}}",
                ),
            ],
            links=[runbook("VercelApiDataStale")],
            w=9,
        ),
    ],
)
