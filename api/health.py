"""GET /api/infrastructure/health: the spec's InfrastructureHealthResponse.

Two halves, each kept for `health.refresh_interval`:

- the platform's state (statuses, response times, error rates, regions, performance_metrics):
  ten PromQL queries, run together, over the recording rules, the firing alerts and the
  exporters' `<ns>_up`, plus the maintenance windows active now from the database. It is the
  same for every caller, so it is built once per interval however many callers ask: one
  refresh at a time, the others answered from the last snapshot meanwhile. Older than
  `health.max_staleness` (Prometheus not answering) it is not served: 503.
- the caller's half: whether the spec's alerts policy admits the caller (statuses are built
  from alerts: a caller the policy refuses gets 403), and the recent deployments its
  deployment_history policies show. Kept per caller (their exact claims) as long.

The status rules are api/health_rules.py's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from api.alertmanager import rfc3339
from api.auth import Identity
from api.bodies import no_query
from api.config import Health, HealthSource
from api.db import Database, may_write_alerts
from api.errors import ApiError
from api.health_rules import (
    SPEC_SERVICES,
    Judged,
    Signals,
    firing_by_service,
    overall_status,
    region_status,
    service_status,
)
from api.maintenance import read_active
from api.metrics import Metrics
from api.prometheus import Prometheus, PrometheusError, Sample, finite
from api.state import SERVICES, caller

log = logging.getLogger(__name__)

# The uptime target → service join every uptime figure per service goes through.
_BY_SERVICE = (
    'on (target) group_left (service) max by (target, service) (uptime_target_info{job="uptime"})'
)

QUERIES = {
    "alerts": 'ALERTS{alertstate="firing"}',
    "probe_errors": (
        f"avg by (service, region) (target_region:uptime_probe_errors:ratio_rate5m * {_BY_SERVICE})"
    ),
    "probe_seconds": (
        f'avg by (service, region) (uptime_probe_duration_seconds{{job="uptime"}} * {_BY_SERVICE})'
    ),
    "probe_count": (
        f'count by (service, region) (uptime_probe_success{{job="uptime"}} * {_BY_SERVICE})'
    ),
    "vercel_requests": "sum(project:vercel_requests:rate5m)",
    "vercel_errors": "sum(project:vercel_request_errors:rate5m)",
    "vercel_p95": "max(project_kind:vercel_request_duration_seconds:p95_rate5m)",
    "vercel_region_errors": (
        "sum by (region) (project_region:vercel_request_errors:rate5m) / "
        "(sum by (region) (project_region:vercel_requests:rate5m) > 0)"
    ),
    "vercel_region_p95": (
        "max by (region) (project_region_kind:vercel_request_duration_seconds:p95_rate5m)"
    ),
    "global": (
        'label_replace(avg(uptime_probe_duration_seconds{job="uptime"}), "figure", "seconds", "", "")'
        ' or label_replace(1 - avg(target:uptime_probe_errors:ratio_rate30d), "figure", '
        '"availability", "", "")'
        ' or label_replace(avg(target:uptime_probe_errors:ratio_rate5m), "figure", '
        '"probe_errors", "", "")'
        ' or label_replace(sum(supabase_active_users{window="30d"}), "figure", "users", "", "")'
    ),
}


def up_query(health: Health) -> str:
    namespaces = sorted({ns for src in health.services.values() for ns in src.exporters})
    if not namespaces:
        return "vector(0) > 1"  # an empty vector: nothing to ask
    return f'max by (__name__) ({{__name__=~"({"|".join(namespaces)})_up"}})'


@dataclass(frozen=True, slots=True)
class Snapshot:
    body: dict[str, Any]
    at: float  # monotonic time it was built


def _ms(seconds: float | None) -> float:
    value = finite(seconds) if seconds is not None else None
    return round(value * 1000, 3) if value is not None else 0.0


def _percent(ratio: float | None) -> float:
    value = finite(ratio) if ratio is not None else None
    return round(value * 100, 4) if value is not None else 0.0


def _by(samples: Sequence[Sample], *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.get(k, "") for k in keys): s.value for s in samples}


def _mean(values: Sequence[float]) -> float | None:
    clean = [v for v in values if finite(v) is not None]
    return sum(clean) / len(clean) if clean else None


def build(
    health: Health,
    results: dict[str, list[Sample]],
    in_maintenance: frozenset[str],
    now: datetime,
) -> dict[str, Any]:
    """The platform half of the answer (everything but recent_deployments), pure."""
    last_check = rfc3339(now)
    firing = firing_by_service(
        (s.labels["service"], s.labels["severity"])
        for s in results["alerts"]
        if "service" in s.labels and "severity" in s.labels
    )
    up = {s.labels.get("__name__", ""): s.value for s in results["up"]}
    probe_errors = _by(results["probe_errors"], "service", "region")
    probe_seconds = _by(results["probe_seconds"], "service", "region")
    probe_count = _by(results["probe_count"], "service", "region")
    requests = results["vercel_requests"][0].value if results["vercel_requests"] else None
    errors = results["vercel_errors"][0].value if results["vercel_errors"] else None
    traffic_ratio = (errors or 0.0) / requests if requests else (0.0 if requests == 0 else None)
    p95 = results["vercel_p95"][0].value if results["vercel_p95"] else None
    global_figures = {s.labels.get("figure", ""): s.value for s in results["global"]}

    services: dict[str, Any] = {}
    judged: dict[str, Judged] = {}
    for name in SPEC_SERVICES:
        src: HealthSource = health.services[name]  # type: ignore[index]
        mine = [k for k in probe_count if k[0] in src.uptime_services]
        # Uptime alerts carry their target's service label (web, db, ...): they are its too.
        labels = dict.fromkeys((*src.alert_services, *src.uptime_services))
        fires: tuple[str, ...] = tuple(sev for svc in labels for sev in firing.get(svc, ()))
        maintenance = any(svc in in_maintenance for svc in src.alert_services)
        traffic = src.vercel_traffic and requests is not None
        signals = Signals(
            exporters_up=tuple(up[f"{ns}_up"] for ns in src.exporters if f"{ns}_up" in up),
            probes=int(sum(probe_count[k] for k in mine)),
            traffic=traffic,
            firing=fires,
            in_maintenance=maintenance,
        )
        status = service_status(signals)
        judged[name] = Judged(status, maintenance, fires)

        regions: dict[str, dict[str, Any]] = {}
        if traffic:
            region_err = _by(results["vercel_region_errors"], "region")
            region_p95 = _by(results["vercel_region_p95"], "region")
            for (region,) in sorted(set(region_err) | set(region_p95)):
                regions[region] = {
                    "status": region_status(
                        finite(region_err[(region,)]) if (region,) in region_err else 0.0,
                        degraded_at=health.region_degraded_error_ratio,
                        critical_at=health.region_critical_error_ratio,
                    ),
                    "response_time_ms": _ms(region_p95.get((region,))),
                }
            error_ratio = traffic_ratio
            seconds = p95
        else:
            by_region: dict[str, list[tuple[float | None, float | None]]] = {}
            for key in mine:
                by_region.setdefault(key[1], []).append(
                    (probe_errors.get(key), probe_seconds.get(key))
                )
            for region, pairs in sorted(by_region.items()):
                err = _mean([e for e, _ in pairs if e is not None])
                regions[region or "default"] = {
                    "status": region_status(
                        err,
                        degraded_at=health.region_degraded_error_ratio,
                        critical_at=health.region_critical_error_ratio,
                    ),
                    "response_time_ms": _ms(_mean([s for _, s in pairs if s is not None])),
                }
            error_ratio = _mean([probe_errors[k] for k in mine if k in probe_errors])
            seconds = _mean([probe_seconds[k] for k in mine if k in probe_seconds])
        services[name] = {
            "status": status,
            "response_time_ms": _ms(seconds),
            "error_rate_percent": _percent(error_ratio),
            "last_check": last_check,
            "region_status": regions,
        }

    global_error = traffic_ratio if requests is not None else global_figures.get("probe_errors")
    users = finite(global_figures.get("users", 0.0)) or 0.0
    return {
        "overall_status": overall_status(judged),
        "services": services,
        "performance_metrics": {
            "global_response_time_ms": _ms(global_figures.get("seconds")),
            "error_rate_percent": _percent(global_error),
            "uptime_percent": _percent(global_figures.get("availability")),
            "active_users": int(users),
        },
    }


class HealthCache:
    """The two halves and their refresh (one at a time for the platform half)."""

    def __init__(
        self,
        health: Health,
        prometheus: Prometheus,
        db: Database,
        metrics: Metrics,
        *,
        max_callers: int = 1024,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.prometheus = prometheus
        self.db = db
        self.queries = {**QUERIES, "up": up_query(health)}
        self.snapshot: Snapshot | None = None
        self._refreshing: asyncio.Task[Snapshot] | None = None
        self.callers: OrderedDict[str, CallerHalf] = OrderedDict()
        self._caller_refresh: dict[str, asyncio.Task[CallerHalf]] = {}
        self.max_callers = max_callers

    async def _build(self) -> Snapshot:
        names = list(self.queries)
        try:
            answers = await asyncio.gather(*(self.prometheus.query(self.queries[n]) for n in names))
        except PrometheusError:
            # Counted once per failed refresh (not per waiting caller).
            self.metrics.prometheus_errors.labels("query").inc()
            raise
        results = dict(zip(names, answers, strict=True))
        windows = await read_active(self.db)
        # Without the database the windows are unknown: judged as if none were active (the
        # statuses stay truthful; only 'maintenance' cannot be shown).
        in_maintenance = windows if windows is not None else frozenset()
        body = build(self.health, results, in_maintenance, datetime.now(UTC))
        return Snapshot(body, time.monotonic())

    async def platform(self) -> dict[str, Any]:
        now = time.monotonic()
        snap = self.snapshot
        if snap is not None and now - snap.at < self.health.refresh_interval:
            return snap.body
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._build())
            self._refreshing.add_done_callback(self._keep)
        if snap is not None and now - snap.at < self.health.max_staleness:
            # Answer from the last snapshot; the refresh lands for the next caller.
            return snap.body
        try:
            fresh = await asyncio.shield(self._refreshing)
        except PrometheusError as exc:
            raise ApiError(
                "prometheus_unavailable", f"Prometheus is not answering ({exc.reason}); retry"
            ) from None
        return fresh.body

    def _keep(self, task: asyncio.Task[Snapshot]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            self.snapshot = task.result()
        else:
            log.warning("health refresh failed", extra={"error": type(exc).__name__})

    async def caller_half(self, who: Identity, db: Database) -> CallerHalf:
        """The caller's half: fresh for refresh_interval; then served stale (for at most as long
        again) while one refresh per caller runs, so a burst of one caller's requests makes
        one database transaction, not one each."""
        key = who.claims_json
        now = time.monotonic()
        entry = self.callers.get(key)
        if entry is not None:
            self.callers.move_to_end(key)
            if now - entry.at < self.health.refresh_interval:
                return entry
        task = self._caller_refresh.get(key)
        if task is None:
            task = asyncio.create_task(_read_caller_half(who, db))
            self._caller_refresh[key] = task
            task.add_done_callback(lambda t: self._keep_caller(key, t))
        if entry is not None and now - entry.at < 2 * self.health.refresh_interval:
            return entry
        return await asyncio.shield(task)

    def _keep_caller(self, key: str, task: asyncio.Task[CallerHalf]) -> None:
        self._caller_refresh.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return  # the awaiting request answers the error; nothing kept
        self.callers[key] = task.result()
        self.callers.move_to_end(key)
        while len(self.callers) > self.max_callers:
            self.callers.popitem(last=False)


@dataclass(frozen=True, slots=True)
class CallerHalf:
    at: float
    allowed: bool
    deployments: list[dict[str, Any]]


async def _read_caller_half(who: Identity, db: Database) -> CallerHalf:
    async with db.as_caller(who) as conn:
        allowed = await may_write_alerts(conn)
        rows = await (await conn.execute(_RECENT)).fetchall() if allowed else []
    deployments = [
        {
            "environment": env,
            "status": status,
            "deployed_at": rfc3339(at),
            "git_branch": branch or "",
        }
        for env, status, at, branch in rows
    ]
    return CallerHalf(time.monotonic(), allowed, deployments)


HEALTH = web.AppKey("health", HealthCache)

_RECENT = """
SELECT environment, deployment_status, deployed_at, git_branch
FROM deployment_history
ORDER BY deployed_at DESC, id
LIMIT 5
"""


async def get_health(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    cache = request.app[HEALTH]
    who = await caller(request)
    no_query(request)
    half = await cache.caller_half(who, services.db)
    if not half.allowed:
        raise ApiError(
            "forbidden",
            "the alerts policy does not admit this caller (admin, developer or ops), and the "
            "statuses are built from alerts",
        )
    body = await cache.platform()
    return web.json_response({**body, "recent_deployments": half.deployments})
