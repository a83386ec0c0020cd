"""Renders the prober's latest results as Prometheus metric families (pure, no I/O).

Sample exposition::

    # HELP uptime_probe_success Whether the latest probe of the target succeeded (after confirmation retries).
    # TYPE uptime_probe_success gauge
    uptime_probe_success{target="web-home"} 1.0
    # HELP uptime_probe_phase_duration_seconds Duration of each phase of the latest probe, summed over redirects.
    # TYPE uptime_probe_phase_duration_seconds gauge
    uptime_probe_phase_duration_seconds{phase="connect",target="web-home"} 0.0004

Label values are bounded by the config file: `target` and `service` are config names, `phase`,
`header` and `reason` are closed enums, and `endpoint` is scheme://host:port without a path.
The probing region is never set here: Prometheus adds it per exporter in its scrape config.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from exporters.uptime.config import UptimeConfig
from exporters.uptime.probe import PHASES, SECURITY_HEADERS, ProbeResult
from exporters.uptime.scheduler import PlannedTarget, ProberStats, TargetState, endpoint_of


@dataclass(frozen=True, slots=True)
class TargetView:
    """One target as a scrape sees it: a copy, never the state the probes keep changing."""

    target: PlannedTarget
    last: ProbeResult | None
    probes: int
    failures: int
    retries: int


@dataclass(frozen=True, slots=True)
class UptimeSnapshot:
    targets: tuple[TargetView, ...]
    in_flight: int
    started_at: float
    concurrency: int
    confirm_attempts: int
    confirm_delay: float
    prober_running: bool
    now: float


def snapshot_of(
    states: Mapping[str, TargetState],
    stats: ProberStats,
    cfg: UptimeConfig,
    prober_running: bool,
    now: float | None = None,
) -> UptimeSnapshot:
    """Copy what the probes keep (cheap: a few fields a target) on the event loop."""
    return UptimeSnapshot(
        targets=tuple(
            TargetView(s.target, s.last, s.probes, s.failures, s.retries) for s in states.values()
        ),
        in_flight=stats.in_flight,
        started_at=stats.started_at,
        concurrency=cfg.concurrency,
        confirm_attempts=cfg.confirm_attempts,
        confirm_delay=cfg.confirm_delay,
        prober_running=prober_running,
        now=now if now is not None else time.time(),
    )


def stale_after(target: PlannedTarget, confirm_attempts: int, confirm_delay: float) -> float:
    return 3 * target.interval + confirm_attempts * (target.timeout + confirm_delay)


def _fresh(snap: UptimeSnapshot, view: TargetView) -> bool:
    r = view.last
    return r is not None and snap.now - r.finished_at <= stale_after(
        view.target, snap.confirm_attempts, snap.confirm_delay
    )


def up(snap: UptimeSnapshot) -> bool:
    """The prober runs and no target's result is stale (a target not yet probed is not stale)."""
    return snap.prober_running and all(v.last is None or _fresh(snap, v) for v in snap.targets)


UP_HELP = "1 when the prober runs and every target has a fresh result."


def collect(snap: UptimeSnapshot) -> Iterable[Metric]:
    """Every uptime family but the shared ones (build, up, scrape duration): pure."""
    g = GaugeMetricFamily
    info = InfoMetricFamily(
        "uptime_target",
        "Configured probe targets.",
        labels=["target", "service", "probe", "endpoint"],
    )
    success = g(
        "uptime_probe_success",
        "Whether the latest probe of the target succeeded (after confirmation retries).",
        labels=["target"],
    )
    status = g(
        "uptime_probe_http_status_code",
        "HTTP status code of the latest probe's final response (0 when none).",
        labels=["target"],
    )
    duration = g(
        "uptime_probe_duration_seconds",
        "Total duration of the latest probe, redirects included.",
        labels=["target"],
    )
    phases = g(
        "uptime_probe_phase_duration_seconds",
        "Duration of each phase of the latest probe, summed over redirects.",
        labels=["target", "phase"],
    )
    redirects = g(
        "uptime_probe_redirects", "Redirects followed by the latest probe.", labels=["target"]
    )
    tls = g(
        "uptime_probe_tls_cert_expiry_timestamp_seconds",
        "Earliest notAfter in the TLS chain presented to the latest probe.",
        labels=["target"],
    )
    headers = g(
        "uptime_probe_security_header_present",
        "Whether the latest response carried the security header (frame_options: X-Frame-Options or CSP frame-ancestors).",
        labels=["target", "header"],
    )
    hsts = g(
        "uptime_probe_hsts_max_age_seconds",
        "max-age of the Strict-Transport-Security header of the latest response.",
        labels=["target"],
    )
    reason = g(
        "uptime_probe_failure_reason",
        "Set to 1 for the reason the latest probe failed; absent while it succeeds.",
        labels=["target", "reason"],
    )
    last = g(
        "uptime_probe_last_timestamp_seconds",
        "When the latest probe of the target finished.",
        labels=["target"],
    )
    probes = CounterMetricFamily(
        "uptime_probes",
        "Probes completed, confirmation retries counted once.",
        labels=["target"],
    )
    failures = CounterMetricFamily(
        "uptime_probe_failures",
        "Probes that failed after confirmation retries.",
        labels=["target"],
    )
    retries = CounterMetricFamily(
        "uptime_probe_retries",
        "Confirmation retries after a failed attempt.",
        labels=["target"],
    )

    for st in snap.targets:
        t = st.target
        name = t.name
        info.add_metric([name, t.service, t.kind, endpoint_of(t)], {})
        probes.add_metric([name], st.probes)
        failures.add_metric([name], st.failures)
        retries.add_metric([name], st.retries)
        r = st.last
        if r is None:
            continue
        if not _fresh(snap, st):
            # A result this old says nothing about the target now: drop it, and say so via up.
            continue
        success.add_metric([name], 1.0 if r.success else 0.0)
        duration.add_metric([name], r.duration)
        last.add_metric([name], r.finished_at)
        for phase in PHASES:
            phases.add_metric([name, phase], r.phases[phase])
        if r.reason is not None:
            reason.add_metric([name, r.reason], 1.0)
        if t.kind == "http":
            status.add_metric([name], float(r.status_code))
            redirects.add_metric([name], float(r.redirects))
            if r.tls_not_after is not None:
                tls.add_metric([name], r.tls_not_after)
            if r.security_headers is not None:
                for header in SECURITY_HEADERS:
                    headers.add_metric([name, header], 1.0 if r.security_headers[header] else 0.0)
            if r.hsts_max_age is not None:
                hsts.add_metric([name], r.hsts_max_age)

    yield g("uptime_targets", "Targets in the loaded config.", value=len(snap.targets))
    yield g("uptime_probes_in_flight", "Probe attempts running now.", value=snap.in_flight)
    yield g(
        "uptime_probe_concurrency_limit",
        "Most probe attempts allowed in flight at once.",
        value=snap.concurrency,
    )
    yield g("uptime_start_time_seconds", "When the exporter started.", value=snap.started_at)
    yield from (
        info,
        success,
        status,
        duration,
        phases,
        redirects,
        tls,
        headers,
        hsts,
        reason,
        last,
        probes,
        failures,
        retries,
    )
