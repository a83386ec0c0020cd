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

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from exporters.uptime.probe import PHASES, SECURITY_HEADERS
from exporters.uptime.scheduler import ProberStats, TargetState, endpoint_of


@dataclass(frozen=True, slots=True)
class ExporterMeta:
    version: str
    revision: str
    concurrency: int
    confirm_attempts: int
    healthy: bool


def stale_after(state: TargetState, confirm_attempts: int, confirm_delay: float) -> float:
    t = state.target
    return 3 * t.interval + confirm_attempts * (t.timeout + confirm_delay)


class UptimeCollector:
    """A fresh collector per scrape over a copy of the states taken on the event loop."""

    def __init__(
        self,
        states: Mapping[str, TargetState],
        stats: ProberStats,
        meta: ExporterMeta,
        confirm_delay: float,
        now: float | None = None,
    ) -> None:
        self.states = states
        self.stats = stats
        self.meta = meta
        self.confirm_delay = confirm_delay
        self.now = now if now is not None else time.time()

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
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

        fresh = True
        for name, st in self.states.items():
            t = st.target
            info.add_metric([name, t.service, t.kind, endpoint_of(t)], {})
            probes.add_metric([name], st.probes)
            failures.add_metric([name], st.failures)
            retries.add_metric([name], st.retries)
            r = st.last
            if r is None:
                continue
            if self.now - r.finished_at > stale_after(
                st, self.meta.confirm_attempts, self.confirm_delay
            ):
                # A result this old says nothing about the target now: drop it, and say so via up.
                fresh = False
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
                        headers.add_metric(
                            [name, header], 1.0 if r.security_headers[header] else 0.0
                        )
                if r.hsts_max_age is not None:
                    hsts.add_metric([name], r.hsts_max_age)

        yield g(
            "uptime_up",
            "1 when the prober runs and every target has a fresh result.",
            value=1.0 if (fresh and self.meta.healthy) else 0.0,
        )
        build = InfoMetricFamily("uptime_build", "Version of the uptime exporter.")
        build.add_metric([], {"version": self.meta.version, "revision": self.meta.revision})
        yield build
        yield g("uptime_targets", "Targets in the loaded config.", value=len(self.states))
        yield g(
            "uptime_probes_in_flight", "Probe attempts running now.", value=self.stats.in_flight
        )
        yield g(
            "uptime_probe_concurrency_limit",
            "Most probe attempts allowed in flight at once.",
            value=self.meta.concurrency,
        )
        yield g(
            "uptime_start_time_seconds", "When the exporter started.", value=self.stats.started_at
        )
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
        yield g(
            "uptime_scrape_duration_seconds",
            "Time spent rendering this scrape's metrics.",
            value=time.perf_counter() - started,
        )
