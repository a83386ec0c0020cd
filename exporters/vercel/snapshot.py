"""What one scrape renders: an immutable picture of the Vercel exporter, taken on the event loop.

The drains keep merging deliveries and the deployments poller keeps refreshing; a scrape copies
what it needs into these frozen values (tuples, `CounterValues` / `HistogramValues`), and the
collector (collector.py) renders only them, off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.core import Metric

from exporters.vercel.series import CounterValues, HistogramValues

Family = CounterValues | HistogramValues


@dataclass(frozen=True, slots=True)
class DrainView:
    """One configured drain."""

    name: str
    sample_rate: float
    last_delivery: float | None  # when it last delivered an accepted batch


@dataclass(frozen=True, slots=True)
class DrainsSnapshot:
    # Every drain-fed family (requests, errors, firewall, durations, vitals, deliveries…), in
    # the order they are served.
    series: tuple[Family, ...]
    drains: tuple[DrainView, ...]  # the configured ones


@dataclass(frozen=True, slots=True)
class ProjectView:
    """One project's deployments as of its last successful refresh."""

    name: str
    last_success: float | None  # None: never refreshed successfully
    in_progress: tuple[tuple[str, int], ...]  # (target, deployments queued or building)
    last_ready: tuple[tuple[str, float], ...]  # (target, newest ready time)
    production: tuple[str, str] | None  # (commit, branch) of the newest ready production one


@dataclass(frozen=True, slots=True)
class DeploymentsSnapshot:
    """What the refreshes know, rebuilt after each refresh (whole or in part)."""

    projects: tuple[ProjectView, ...]
    series: tuple[Family, ...]  # deployments, build and queue histograms, vanished, invalid


@dataclass(frozen=True, slots=True)
class ApiView:
    """The REST client's and the refresh loop's figures as of the scrape."""

    families: tuple[Metric, ...]  # requests, errors, rate_limit_remaining (common.upstream)
    waited_seconds: float
    refreshes: tuple[tuple[str, float], ...]  # (result, refreshes): success, failure
    refresh_duration: float | None


@dataclass(frozen=True, slots=True)
class PollingView:
    """The deployments side of one scrape (absent when no API token is configured)."""

    deployments: DeploymentsSnapshot
    api: ApiView
    stale_after: float


@dataclass(frozen=True, slots=True)
class VercelSnapshot:
    now: float
    drains: DrainsSnapshot
    polling: PollingView | None = None
