"""Renders a VercelSnapshot as Prometheus metric families (pure: no I/O, no live state).

Served besides the shared families (vercel_build_info, vercel_up, vercel_scrape_duration_seconds):
- vercel_api_polling_enabled;
- every drain-fed family (requests, log errors, firewall actions, request durations, Web
  Vitals, deliveries, records, skipped records), then each configured drain's sample rate and
  last delivery;
- with an API token: deployments by final state, build and queue histograms, vanished and
  invalid records, refreshes by result; per fresh project the deployments in progress, the last
  ready time and the production deployment; per project the last successful refresh; the
  client's requests, errors and rate-limit figures, time waited for rate limits, and the last
  refresh's duration.

A project not refreshed within `stale_after` has its gauges left out rather than served old,
and makes `vercel_up` 0.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from exporters.vercel.snapshot import PollingView, ProjectView, VercelSnapshot

UP_HELP = (
    "1 if the deployments data served is fresh (every project refreshed within "
    "stale_after), or no API token is configured (drains only); 0 otherwise."
)


def fresh(project: ProjectView, now: float, stale_after: float) -> bool:
    return project.last_success is not None and now - project.last_success <= stale_after


def up(snap: VercelSnapshot) -> bool:
    p = snap.polling
    return p is None or all(fresh(pr, snap.now, p.stale_after) for pr in p.deployments.projects)


def collect(snap: VercelSnapshot) -> list[Metric]:
    out: list[Metric] = [
        GaugeMetricFamily(
            "vercel_api_polling_enabled",
            "1 if an API token is configured and deployments are polled.",
            value=1.0 if snap.polling is not None else 0.0,
        )
    ]
    out += [s.render() for s in snap.drains.series]
    rate = GaugeMetricFamily(
        "vercel_drain_sample_rate",
        "The sampling rate configured for each drain; its counts are scaled by 1/rate.",
        labels=["drain"],
    )
    last = GaugeMetricFamily(
        "vercel_drain_last_delivery_timestamp_seconds",
        "When the drain last delivered an accepted batch (Unix time).",
        labels=["drain"],
    )
    for d in snap.drains.drains:
        rate.add_metric([d.name], d.sample_rate)
        if d.last_delivery is not None:
            last.add_metric([d.name], d.last_delivery)
    out += [rate, last]
    if snap.polling is not None:
        out += _polling(snap.polling, snap.now)
    return out


def _polling(p: PollingView, now: float) -> list[Metric]:
    out: list[Metric] = [s.render() for s in p.deployments.series]
    refreshes = CounterMetricFamily(
        "vercel_api_refreshes", "Deployment refreshes by result.", labels=["result"]
    )
    for result, n in sorted(p.api.refreshes):
        refreshes.add_metric([result], n)
    out.append(refreshes)
    building = GaugeMetricFamily(
        "vercel_deployments_in_progress",
        "Deployments queued or building now (cached: last successful refresh).",
        labels=["project", "target"],
    )
    last_ready = GaugeMetricFamily(
        "vercel_deployment_last_ready_timestamp_seconds",
        "When the newest ready deployment became ready (Unix time; cached).",
        labels=["project", "target"],
    )
    prod = InfoMetricFamily(
        "vercel_production_deployment",
        "The newest ready production deployment per project (cached): commit and branch.",
        labels=["project"],
    )
    last_ok = GaugeMetricFamily(
        "vercel_api_last_success_timestamp_seconds",
        "When deployments were last refreshed successfully (Unix time).",
        labels=["project"],
    )
    for pr in p.deployments.projects:
        if pr.last_success is not None:
            last_ok.add_metric([pr.name], pr.last_success)
        if not fresh(pr, now, p.stale_after):
            continue  # stale: say nothing rather than something old
        for target, n in pr.in_progress:
            building.add_metric([pr.name, target], n)
        for target, ts in pr.last_ready:
            last_ready.add_metric([pr.name, target], ts)
        if pr.production is not None:
            commit, branch = pr.production
            prod.add_metric([pr.name], {"commit": commit, "branch": branch})
    out += [building, last_ready, prod, last_ok]
    out += p.api.families
    out.append(
        CounterMetricFamily(
            "vercel_api_rate_limit_wait_seconds",
            "Time spent waiting for Vercel rate-limit windows (and our own ceiling) to reset.",
            value=p.api.waited_seconds,
        )
    )
    if p.api.refresh_duration is not None:
        out.append(
            GaugeMetricFamily(
                "vercel_api_refresh_duration_seconds",
                "How long the last deployments refresh took.",
                value=p.api.refresh_duration,
            )
        )
    return out
