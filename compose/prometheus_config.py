"""One function that writes Prometheus's config, for compose (committed) and the local stack:
its scrape jobs are those of the table's rows (compose/services.py), at their addresses."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from alert_rules.config import AlertRulesConfig, prom_duration
from compose.service import Scrape, Service


@dataclass(frozen=True, slots=True)
class Target:
    """One service in one of its scrape jobs, at `address` (host:port)."""

    scrape: Scrape
    address: str
    labels: dict[str, str] = field(default_factory=dict)


def targets(
    services: Iterable[Service],
    address: Callable[[Service], str],
    scraped: Callable[[Scrape], bool] = lambda scrape: True,
) -> list[Target]:
    """The scrape targets of `services` (in their order), each at `address(service)`; an
    uptime exporter's region is a target label, set here, never by the exporter."""
    return [
        Target(scrape, address(s), {"region": s.region} if s.region else {})
        for s in services
        for scrape in s.scrapes
        if scraped(scrape)
    ]


def prometheus_config(
    *,
    rules: AlertRulesConfig,
    rule_files: list[str],
    alertmanager: str,
    targets: Sequence[Target],
) -> dict[str, Any]:
    """`rules`: the alert rules' config, whose evaluation_interval the rules' `for` durations
    are tuned for (alert_rules/config.yaml); `alertmanager`: host:port alerts go to; `targets`:
    one job per job name, in the order the names first appear."""
    return {
        "global": {
            "scrape_interval": "15s",
            "scrape_timeout": "10s",
            "evaluation_interval": prom_duration(rules.evaluation_interval),
        },
        "rule_files": rule_files,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": scrape_configs(targets),
    }


def scrape_configs(targets: Sequence[Target]) -> list[dict[str, Any]]:
    jobs: dict[str, list[Target]] = {}
    for t in targets:
        jobs.setdefault(t.scrape.job, []).append(t)
    return [_job(ts) for ts in jobs.values()]


def _job(targets: list[Target]) -> dict[str, Any]:
    scrape = targets[0].scrape
    if any(t.scrape != scrape for t in targets):
        raise ValueError(f"services scraped by job {scrape.job} disagree on how")
    job: dict[str, Any] = {"job_name": scrape.job}
    if scrape.interval:
        job["scrape_interval"] = scrape.interval
    if scrape.timeout:
        job["scrape_timeout"] = scrape.timeout
    if scrape.metrics_path:
        job["metrics_path"] = scrape.metrics_path
    if scrape.sd_path:
        job["http_sd_configs"] = [
            {"url": f"http://{t.address}{scrape.sd_path}", "refresh_interval": scrape.sd_refresh}
            for t in targets
        ]
    else:
        job["static_configs"] = [
            {"targets": [t.address], **({"labels": t.labels} if t.labels else {})}
            for t in sorted(targets, key=lambda t: (sorted(t.labels.items()), t.address))
        ]
    return job


def dump(doc: dict[str, Any], header: str) -> str:
    return header + yaml.safe_dump(doc, sort_keys=False)
