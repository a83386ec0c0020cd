"""Supabase Management API, polled in the background: projects, backups and PITR, service health.

Rate limits are per endpoint and project (120 a minute). Unlike Vercel, Supabase's
X-RateLimit-Reset is the seconds *remaining* in the window: when Remaining reaches 0, or on a
429, that endpoint is left alone until then. A refresh that fails keeps the last good snapshot;
after `stale_after` without success the snapshot is dropped and supabase_management_up is 0.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from exporters.supabase.config import Management

log = logging.getLogger("exporters.supabase.management")

ACTIVE = frozenset({"ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY"})
BACKUP_STATES = ("COMPLETED", "FAILED", "PENDING", "REMOVED", "ARCHIVED", "CANCELLED")
HEALTH = ("ACTIVE_HEALTHY", "COMING_UP", "UNHEALTHY")
# Query parameters as httpx takes them; a list, since `services` repeats.
Params = list[tuple[str, str | int | float | bool | None]]
REASONS = ("auth", "rate_limited", "server", "timeout", "connect", "malformed", "client")


# Every sample name the Management API side can produce (checked against a live refresh).
SAMPLE_NAMES = frozenset(
    {
        "supabase_management_up",
        "supabase_management_last_success_timestamp_seconds",
        "supabase_management_refresh_duration_seconds",
        "supabase_management_requests_total",
        "supabase_management_errors_total",
        "supabase_management_rate_limit_remaining",
        "supabase_project_info",
        "supabase_backups",
        "supabase_backup_last_completed_timestamp_seconds",
        "supabase_backup_last_failed_timestamp_seconds",
        "supabase_pitr_enabled",
        "supabase_walg_enabled",
        "supabase_pitr_window_seconds",
        "supabase_pitr_required",
        "supabase_service_healthy",
        "supabase_service_status",
    }
)


class ApiError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class ProjectSnapshot:
    ref: str
    name: str = ""
    region: str = ""
    status: str = ""
    backups: dict[str, int] = field(default_factory=dict)
    last_completed: float | None = None
    last_failed: float | None = None
    pitr: bool | None = None
    walg: bool | None = None
    pitr_window: float | None = None
    services: dict[str, str] = field(default_factory=dict)
    refreshed_at: float = 0.0


def _ts(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_backups(doc: object, snap: ProjectSnapshot) -> None:
    if not isinstance(doc, dict):
        raise ApiError("malformed", "backups: not an object")
    items = doc.get("backups") or []  # null on the free plan
    if not isinstance(items, list):
        raise ApiError("malformed", "backups.backups: not a list")
    counts = dict.fromkeys(BACKUP_STATES, 0)
    completed: list[float] = []
    failed: list[float] = []
    for b in items:
        if not isinstance(b, dict) or not isinstance(b.get("status"), str):
            raise ApiError("malformed", "backups.backups[]: no status")
        status = b["status"] if b["status"] in counts else "OTHER"
        counts[status] = counts.get(status, 0) + 1
        at = _ts(b.get("inserted_at"))
        if at is not None and status == "COMPLETED":
            completed.append(at)
        if at is not None and status == "FAILED":
            failed.append(at)
    physical = doc.get("physical_backup_data")
    if not isinstance(physical, dict):
        physical = {}
    earliest, latest = (
        physical.get("earliest_physical_backup_date_unix"),
        physical.get("latest_physical_backup_date_unix"),
    )
    snap.backups = counts
    snap.last_completed = max(completed) if completed else None
    snap.last_failed = max(failed) if failed else None
    snap.pitr = doc.get("pitr_enabled") if isinstance(doc.get("pitr_enabled"), bool) else None
    snap.walg = doc.get("walg_enabled") if isinstance(doc.get("walg_enabled"), bool) else None
    snap.pitr_window = (
        float(latest - earliest)
        if isinstance(earliest, int) and isinstance(latest, int) and latest >= earliest
        else None
    )


def parse_health(doc: object, wanted: Iterable[str]) -> dict[str, str]:
    if not isinstance(doc, list):
        raise ApiError("malformed", "health: not a list")
    out = {}
    for item in doc:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ApiError("malformed", "health[]: no name")
        status = item.get("status")
        out[item["name"]] = status if status in HEALTH else "UNKNOWN"
    return {s: out.get(s, "UNKNOWN") for s in wanted}


class ManagementPoller:
    def __init__(
        self,
        cfg: Management,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.sleep = sleep
        self.client = httpx.AsyncClient(
            base_url=cfg.base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "wsinfra-supabase-exporter"},
            timeout=cfg.timeout,
            transport=transport,
        )
        self.required = {p.ref: p.pitr_required for p in cfg.projects}
        self.projects: dict[str, ProjectSnapshot] = {}
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.remaining: dict[str, int] = {}
        self.blocked_until: dict[str, float] = {}
        self.last_success: float | None = None
        self.refresh_seconds: float | None = None

    async def aclose(self) -> None:
        await self.client.aclose()

    async def get(self, endpoint: str, path: str, params: Params | None = None) -> Any:
        now = self.clock()
        if self.blocked_until.get(endpoint, 0) > now:
            self.errors["rate_limited"] += 1
            raise ApiError("rate_limited", f"{endpoint}: waiting for the rate-limit window")
        try:
            resp = await self.client.get(path, params=params)
        except httpx.TimeoutException:
            self._count(endpoint, "error", "timeout")
            raise ApiError("timeout", endpoint) from None
        except httpx.TransportError as exc:
            self._count(endpoint, "error", "connect")
            raise ApiError("connect", f"{endpoint}: {type(exc).__name__}") from None
        remaining = _int(resp.headers.get("X-RateLimit-Remaining"))
        reset = _int(resp.headers.get("X-RateLimit-Reset"))  # seconds remaining in the window
        if remaining is not None:
            self.remaining[endpoint] = remaining
        if resp.status_code == 429 or remaining == 0:
            self.blocked_until[endpoint] = self.clock() + min(
                float(reset if reset is not None else 60), 600.0
            )
        code = resp.status_code
        reason = (
            None
            if code == 200
            else "rate_limited"
            if code == 429
            else "auth"
            if code in (401, 403)
            else "server"
            if code >= 500
            else "client"
        )
        if reason is None:
            try:
                doc = resp.json()
            except ValueError:
                reason = "malformed"
            else:
                self._count(endpoint, str(code), None)
                return doc
        self._count(endpoint, str(code), reason)
        raise ApiError(reason, f"{endpoint}: HTTP {code}")

    def _count(self, endpoint: str, code: str, reason: str | None) -> None:
        self.requests[(endpoint, code)] += 1
        if reason:
            self.errors[reason] += 1

    async def refresh(self) -> bool:
        start = time.perf_counter()
        ok = True
        refs = {p.ref: p.ref for p in self.cfg.projects}
        listed: dict[str, dict[str, Any]] = {}
        if self.cfg.discover:
            try:
                doc = await self.get("projects", "/v1/projects")
                if not isinstance(doc, list):
                    raise ApiError("malformed", "projects: not a list")
                for p in doc:
                    if isinstance(p, dict) and isinstance(p.get("ref"), str):
                        listed[p["ref"]] = p
                        if p.get("status") in ACTIVE:
                            refs.setdefault(p["ref"], p["ref"])
            except ApiError as exc:
                ok = False
                log.warning(
                    "project discovery failed", extra={"reason": exc.reason, "detail": exc.detail}
                )
        for ref in refs:
            meta = listed.get(ref, {})
            if meta and meta.get("status") not in ACTIVE:
                continue  # paused or removed: nothing to ask, nothing to alert on
            snap = ProjectSnapshot(
                ref=ref,
                name=str(meta.get("name", ""))[:100],
                region=str(meta.get("region", ""))[:40],
                status=str(meta.get("status", "")),
            )
            try:
                parse_backups(
                    await self.get("backups", f"/v1/projects/{ref}/database/backups"), snap
                )
                health = await self.get(
                    "health",
                    f"/v1/projects/{ref}/health",
                    [("services", s) for s in self.cfg.services],
                )
                snap.services = parse_health(health, self.cfg.services)
            except ApiError as exc:
                ok = False
                log.warning(
                    "project refresh failed",
                    extra={"project": ref, "reason": exc.reason, "detail": exc.detail},
                )
                continue
            snap.refreshed_at = self.clock()
            self.projects[ref] = snap
        # Projects gone from the account (or paused) stop being reported.
        if self.cfg.discover and listed:
            for ref in list(self.projects):
                if ref not in refs or listed.get(ref, {}).get("status") not in (*ACTIVE, None):
                    del self.projects[ref]
        if ok:
            self.last_success = self.clock()
        self.refresh_seconds = time.perf_counter() - start
        return ok

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug here must not stop the SQL collectors' scrapes
                log.exception("management refresh crashed")
            await asyncio.sleep(self.cfg.refresh_interval)

    def up(self) -> bool:
        return (
            self.last_success is not None
            and self.clock() - self.last_success <= self.cfg.stale_after
        )

    def collect(self) -> Iterable[Metric]:
        now = self.clock()
        yield GaugeMetricFamily(
            "supabase_management_up",
            "1 if the Management API data served (cached from the background refresh) is fresh.",
            value=1.0 if self.up() else 0.0,
        )
        if self.last_success is not None:
            yield GaugeMetricFamily(
                "supabase_management_last_success_timestamp_seconds",
                "When the Management API was last refreshed without errors.",
                value=self.last_success,
            )
        if self.refresh_seconds is not None:
            yield GaugeMetricFamily(
                "supabase_management_refresh_duration_seconds",
                "How long the last refresh took.",
                value=self.refresh_seconds,
            )
        req = CounterMetricFamily(
            "supabase_management_requests",
            "Management API requests by endpoint and HTTP code.",
            labels=["endpoint", "code"],
        )
        for (ep, code), n in sorted(self.requests.items()):
            req.add_metric([ep, code], n)
        err = CounterMetricFamily(
            "supabase_management_errors",
            "Failed Management API requests by reason.",
            labels=["reason"],
        )
        for reason in REASONS:
            err.add_metric([reason], self.errors.get(reason, 0))
        rem = GaugeMetricFamily(
            "supabase_management_rate_limit_remaining",
            "X-RateLimit-Remaining from the last answer.",
            labels=["endpoint"],
        )
        for ep, n in sorted(self.remaining.items()):
            rem.add_metric([ep], n)
        yield from (req, err, rem)
        info = InfoMetricFamily(
            "supabase_project",
            "Projects watched (cached): name, region, status.",
            labels=["project"],
        )
        backups = GaugeMetricFamily(
            "supabase_backups",
            "Backups listed by the API, by status (cached).",
            labels=["project", "status"],
        )
        last_ok = GaugeMetricFamily(
            "supabase_backup_last_completed_timestamp_seconds",
            "When the newest completed backup was taken (cached).",
            labels=["project"],
        )
        last_bad = GaugeMetricFamily(
            "supabase_backup_last_failed_timestamp_seconds",
            "When the newest failed backup was attempted (cached).",
            labels=["project"],
        )
        pitr = GaugeMetricFamily(
            "supabase_pitr_enabled",
            "1 if point-in-time recovery is on (cached).",
            labels=["project"],
        )
        walg = GaugeMetricFamily(
            "supabase_walg_enabled", "1 if WAL-G archiving is on (cached).", labels=["project"]
        )
        window = GaugeMetricFamily(
            "supabase_pitr_window_seconds",
            "Span between the earliest and latest physical backup: how far back PITR reaches (cached).",
            labels=["project"],
        )
        required = GaugeMetricFamily(
            "supabase_pitr_required", "1 where the config says PITR must be on.", labels=["project"]
        )
        health = GaugeMetricFamily(
            "supabase_service_healthy",
            "1 if the service reports ACTIVE_HEALTHY (cached); 0 for UNHEALTHY, COMING_UP or missing.",
            labels=["project", "service"],
        )
        status = GaugeMetricFamily(
            "supabase_service_status",
            "The service's reported status, one series per status (cached).",
            labels=["project", "service", "status"],
        )
        for ref, snap in sorted(self.projects.items()):
            if now - snap.refreshed_at > self.cfg.stale_after:
                continue  # stale: say nothing rather than something old
            info.add_metric(
                [ref], {"name": snap.name, "region": snap.region, "status": snap.status}
            )
            for st, n in sorted(snap.backups.items()):
                backups.add_metric([ref, st.lower()], n)
            if snap.last_completed is not None:
                last_ok.add_metric([ref], snap.last_completed)
            if snap.last_failed is not None:
                last_bad.add_metric([ref], snap.last_failed)
            if snap.pitr is not None:
                pitr.add_metric([ref], 1.0 if snap.pitr else 0.0)
            if snap.walg is not None:
                walg.add_metric([ref], 1.0 if snap.walg else 0.0)
            if snap.pitr_window is not None:
                window.add_metric([ref], snap.pitr_window)
            required.add_metric([ref], 1.0 if self.required.get(ref) else 0.0)
            for svc, st in sorted(snap.services.items()):
                health.add_metric([ref, svc], 1.0 if st == "ACTIVE_HEALTHY" else 0.0)
                status.add_metric([ref, svc, st.lower()], 1.0)
        yield from (info, backups, last_ok, last_bad, pitr, walg, window, required, health, status)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
