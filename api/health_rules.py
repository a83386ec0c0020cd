"""The status rules of GET /api/infrastructure/health, as pure functions over what Prometheus
and the database said (api/health.py gathers it). docs/operator-api.md, "GET /health", writes
the same rules down; tests/api/test_health_rules.py proves each.

A service (vercel, supabase, redis, external_apis) is, first rule that applies:

1. offline   — no signal of it at all (no exporter `<ns>_up`, no uptime probe, no traffic), or
               every exporter it has reports down (`<ns>_up` 0): we cannot see it, so it is
               never shown healthy;
2. critical  — an alert of severity critical is firing with its `service` label (one of its
               alerts' services, or of its uptime targets' services);
3. degraded  — an alert of severity error or warning of it is firing;
4. healthy   — otherwise.

Alerts suppressed by a maintenance window's silence still fire in Prometheus, so a service
under maintenance is still judged on what it does; the overall status says it is maintenance:

overall_status, first rule that applies:

1. critical     — a service outside any maintenance window is critical;
2. maintenance  — a maintenance window is active for any of the services;
3. degraded     — any service is degraded, critical (inside a window) or offline;
4. healthy      — every service is healthy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

ServiceStatus = Literal["healthy", "degraded", "critical", "offline"]
OverallStatus = Literal["healthy", "degraded", "critical", "maintenance"]

# The spec's four services, in its order.
SPEC_SERVICES = ("vercel", "supabase", "redis", "external_apis")


@dataclass(frozen=True, slots=True)
class Signals:
    """What is known about one spec service at the moment of the snapshot."""

    # Each `<ns>_up` of its exporters that Prometheus holds now (1.0 up, 0.0 down).
    exporters_up: tuple[float, ...] = ()
    # Number of uptime probe series (targets times regions) of its uptime services now.
    probes: int = 0
    # Whether request traffic figures exist for it (Vercel's request rate).
    traffic: bool = False
    # Severities of its firing alerts (one entry per firing alert).
    firing: tuple[str, ...] = ()
    in_maintenance: bool = False

    @property
    def seen(self) -> bool:
        return bool(self.exporters_up) or self.probes > 0 or self.traffic


def service_status(s: Signals) -> ServiceStatus:
    if not s.seen:
        return "offline"
    if s.exporters_up and not any(up >= 1 for up in s.exporters_up):
        return "offline"
    if "critical" in s.firing:
        return "critical"
    if "error" in s.firing or "warning" in s.firing:
        return "degraded"
    return "healthy"


@dataclass(frozen=True, slots=True)
class Judged:
    status: ServiceStatus
    in_maintenance: bool = False
    firing: tuple[str, ...] = field(default=())


def overall_status(services: Mapping[str, Judged]) -> OverallStatus:
    judged = list(services.values())
    if any(j.status == "critical" and not j.in_maintenance for j in judged):
        return "critical"
    if any(j.in_maintenance for j in judged):
        return "maintenance"
    if any(j.status != "healthy" for j in judged):
        return "degraded"
    return "healthy"


def region_status(error_ratio: float | None, *, degraded_at: float, critical_at: float) -> str:
    """A region's status from its probe (or request) error ratio over the last 5 minutes; no
    figure is 'offline' (the region reports nothing), never healthy."""
    if error_ratio is None:
        return "offline"
    if error_ratio >= critical_at:
        return "critical"
    if error_ratio >= degraded_at:
        return "degraded"
    return "healthy"


def firing_by_service(alerts: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """(service label, severity) of each firing alert → severities per service label."""
    out: dict[str, list[str]] = {}
    for service, severity in alerts:
        out.setdefault(service, []).append(severity)
    return {k: tuple(v) for k, v in out.items()}
