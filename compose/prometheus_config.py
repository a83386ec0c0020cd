"""One function that writes Prometheus's config, for compose (committed) and the local stack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from alert_rules.config import AlertRulesConfig, prom_duration

# The uptime job is scraped often: detection time is the floor of alert latency, and the
# exporter serves cached results, so a scrape costs it little.
UPTIME_SCRAPE_INTERVAL = "5s"
UPTIME_SCRAPE_TIMEOUT = "4s"


def prometheus_config(
    *,
    rules: AlertRulesConfig,
    uptime_by_region: Mapping[str, str],
    alertmanager: str,
    rule_files: list[str],
    self_address: str,
    recorder: str,
    vercel: str | None = None,
    supabase: str | None = None,
    supabase_projects_sd: str | None = None,
    billing: str | None = None,
) -> dict[str, Any]:
    """`rules`: the alert rules' config, whose evaluation_interval the rules' `for` durations
    are tuned for (alert_rules/config.yaml); `uptime_by_region`: region → host:port of that
    region's uptime exporter."""
    return {
        "global": {
            "scrape_interval": "15s",
            "scrape_timeout": "10s",
            "evaluation_interval": prom_duration(rules.evaluation_interval),
        },
        "rule_files": rule_files,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {
                "job_name": "uptime",
                "scrape_interval": UPTIME_SCRAPE_INTERVAL,
                "scrape_timeout": UPTIME_SCRAPE_TIMEOUT,
                # The region is a target label, set here per exporter, never by the exporter.
                "static_configs": [
                    {"targets": [addr], "labels": {"region": region}}
                    for region, addr in sorted(uptime_by_region.items())
                ],
            },
            # Deploy-aware alerts read the recorder's deployment series: scrape it often enough
            # that a deploy is known before the alerts it may cause.
            {
                "job_name": "recorder",
                "scrape_interval": "15s",
                "static_configs": [{"targets": [recorder]}],
            },
            *(
                [{"job_name": "vercel", "static_configs": [{"targets": [vercel]}]}]
                if vercel
                else []
            ),
            # SQL collectors run on scrape, each query under its statement timeout and the
            # whole under the exporter's budget (8 s): the timeout leaves room for it.
            *(
                [
                    {
                        "job_name": "supabase",
                        "scrape_interval": "15s",
                        "scrape_timeout": "10s",
                        "static_configs": [{"targets": [supabase]}],
                    }
                ]
                if supabase
                else []
            ),
            # Supabase's own per-project metrics, through the exporter (which holds the keys):
            # targets from its HTTP SD, one scrape per project. Supabase updates them each minute.
            *(
                [
                    {
                        "job_name": "supabase-projects",
                        "scrape_interval": "60s",
                        "scrape_timeout": "20s",
                        "metrics_path": "/probe",
                        "http_sd_configs": [
                            {"url": supabase_projects_sd, "refresh_interval": "1m"}
                        ],
                    }
                ]
                if supabase_projects_sd
                else []
            ),
            # Costs are refreshed in the background (hourly); /metrics serves the last refresh.
            *(
                [
                    {
                        "job_name": "billing",
                        "scrape_interval": "30s",
                        "static_configs": [{"targets": [billing]}],
                    }
                ]
                if billing
                else []
            ),
            {"job_name": "prometheus", "static_configs": [{"targets": [self_address]}]},
            {"job_name": "alertmanager", "static_configs": [{"targets": [alertmanager]}]},
        ],
    }


def dump(doc: dict[str, Any], header: str) -> str:
    return header + yaml.safe_dump(doc, sort_keys=False)
