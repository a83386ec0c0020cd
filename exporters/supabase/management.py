"""Supabase Management API, polled in the background: projects, backups and PITR, service health.

Split as client → immutable snapshot → collector:
- `ManagementSource` is the vendor adapter. Its `common.upstream.Upstream` makes the requests
  (bearer token from the token file, re-read when it changes; one closed set of error reasons;
  request, error and rate-limit figures), its `common.refresh.RefreshLoop` runs `refresh()` every
  `refresh_interval`, and each refresh builds a new `ManagementSnapshot` (frozen, tuples only)
  from the previous one and what the API says now.
- `ManagementView` is what one scrape serves: the projects still fresh, and the client's figures.
- `collect(view)` is the pure render of a view into metric families.
- With `record:`, each project's listing (its entries, not only the aggregates) is handed to
  `exporters.supabase.backup_record`, which mirrors it into backup_status on its own task.

Rate limits are per endpoint and project (120 a minute). Unlike Vercel, Supabase's
X-RateLimit-Reset is the seconds *remaining* in the window (`reset_delta_seconds`): when
Remaining reaches 0, or on a 429, that endpoint is left alone until then. A refresh that fails
keeps the last good data: each project's last good state stays served until it is older than
`stale_after`, then it is dropped; supabase_management_up is 0 once no refresh has succeeded
entirely for `stale_after`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from common.refresh import RefreshLoop
from common.upstream import SecretFileAuth, Upstream, UpstreamError, reset_delta_seconds
from exporters.supabase.backup_record import MAX_ENTRIES, BackupEntry, BackupRecord, RecordView
from exporters.supabase.backup_record import collect as collect_record
from exporters.supabase.config import Management

log = logging.getLogger("exporters.supabase.management")
T = TypeVar("T")

# The metric prefix of the client's and the refresh loop's figures, and what they are about.
PREFIX = "supabase_management"
WHAT = "the Supabase Management API"
USER_AGENT = "wsinfra-supabase-exporter"

ACTIVE = frozenset({"ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY"})
BACKUP_STATES = ("COMPLETED", "FAILED", "PENDING", "REMOVED", "ARCHIVED", "CANCELLED")
HEALTH = ("ACTIVE_HEALTHY", "COMING_UP", "UNHEALTHY")


# --- the snapshot --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backups:
    """A project's backups as GET /v1/projects/{ref}/database/backups says."""

    counts: tuple[tuple[str, int], ...] = ()  # (status, backups), every known status
    # The listed backups the mirror can write, newest first, at most MAX_ENTRIES; those it cannot
    # (no integer id, no time: `invalid`) and those past MAX_ENTRIES (`over_limit`) are counted.
    entries: tuple[BackupEntry, ...] = ()
    invalid: int = 0
    over_limit: int = 0
    last_completed: float | None = None
    last_failed: float | None = None
    pitr: bool | None = None
    walg: bool | None = None
    pitr_window: float | None = None  # latest minus earliest physical backup
    pitr_earliest: float | None = None  # the earliest physical backup: how far back PITR reaches


@dataclass(frozen=True, slots=True)
class ProjectSnapshot:
    ref: str
    name: str = ""
    region: str = ""
    status: str = ""
    pitr_required: bool = False  # config
    backups: Backups = Backups()
    services: tuple[tuple[str, str], ...] = ()  # (service, status), as configured
    refreshed_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ManagementSnapshot:
    """What the refreshes know: each watched project's last good state, by ref."""

    projects: tuple[ProjectSnapshot, ...] = ()

    def refs(self) -> list[str]:
        return [p.ref for p in self.projects]


@dataclass(frozen=True, slots=True)
class ManagementView:
    """What one scrape serves: the projects refreshed within `stale_after`, and the client's
    request, error and rate-limit families (rendered by common.upstream on the event loop)."""

    projects: tuple[ProjectSnapshot, ...]
    api: tuple[Metric, ...] = ()
    record: RecordView | None = None  # None: no `record:` configured


# --- parsing (pure) ------------------------------------------------------------------------


def _malformed(detail: str) -> UpstreamError:
    return UpstreamError("malformed", detail)


def _ts(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        at.timestamp()  # in range for the record's timestamptz as well
    except (ValueError, OverflowError):
        return None
    return at


def _entry(item: dict[str, Any], status: str) -> BackupEntry | None:
    """The backup as the mirror keys it (`supabase:<ref>:<id>`), or None without an integer id
    or a time."""
    backup_id, at = item.get("id"), _when(item.get("inserted_at"))
    if isinstance(backup_id, bool) or not isinstance(backup_id, int) or at is None:
        return None
    if not 0 <= backup_id < 2**63:
        return None
    physical = item.get("is_physical_backup")
    return BackupEntry(backup_id, status[:40], at, physical is True)


def parse_backups(doc: object) -> Backups:
    if not isinstance(doc, dict):
        raise _malformed("backups: not an object")
    items = doc.get("backups") or []  # null on the free plan
    if not isinstance(items, list):
        raise _malformed("backups.backups: not a list")
    counts = dict.fromkeys(BACKUP_STATES, 0)
    completed: list[float] = []
    failed: list[float] = []
    entries: list[BackupEntry] = []
    invalid = 0
    for b in items:
        if not isinstance(b, dict) or not isinstance(b.get("status"), str):
            raise _malformed("backups.backups[]: no status")
        status = b["status"] if b["status"] in counts else "OTHER"
        counts[status] = counts.get(status, 0) + 1
        entry = _entry(b, b["status"])
        if entry is None:
            invalid += 1
        else:
            entries.append(entry)
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
    pitr, walg = doc.get("pitr_enabled"), doc.get("walg_enabled")
    # One entry per id (the newest listing of it wins), newest first, the newest MAX_ENTRIES.
    unique = {e.id: e for e in sorted(entries, key=lambda e: e.inserted_at)}
    newest = sorted(unique.values(), key=lambda e: (e.inserted_at, e.id), reverse=True)
    return Backups(
        counts=tuple(sorted(counts.items())),
        entries=tuple(newest[:MAX_ENTRIES]),
        invalid=invalid,
        over_limit=max(len(newest) - MAX_ENTRIES, 0),
        last_completed=max(completed) if completed else None,
        last_failed=max(failed) if failed else None,
        pitr=pitr if isinstance(pitr, bool) else None,
        walg=walg if isinstance(walg, bool) else None,
        pitr_window=(
            float(latest - earliest)
            if isinstance(earliest, int) and isinstance(latest, int) and latest >= earliest
            else None
        ),
        pitr_earliest=float(earliest) if isinstance(earliest, int) else None,
    )


def parse_health(doc: object, wanted: Iterable[str]) -> tuple[tuple[str, str], ...]:
    if not isinstance(doc, list):
        raise _malformed("health: not a list")
    out = {}
    for item in doc:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _malformed("health[]: no name")
        status = item.get("status")
        out[item["name"]] = status if status in HEALTH else "UNKNOWN"
    return tuple(sorted({s: out.get(s, "UNKNOWN") for s in wanted}.items()))


def parse_projects(doc: object) -> dict[str, dict[str, Any]]:
    """GET /v1/projects: ref → the project's object (entries without a ref are skipped)."""
    if not isinstance(doc, list):
        raise _malformed("projects: not a list")
    return {p["ref"]: p for p in doc if isinstance(p, dict) and isinstance(p.get("ref"), str)}


# --- the client and its refresh loop -------------------------------------------------------


class ManagementSource:
    def __init__(
        self,
        cfg: Management,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
        record: BackupRecord | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        # The mirror into backup_status (`record:`): each refreshed project's listing is handed
        # to it; its own task writes (never this loop).
        self.record = record
        self.upstream = Upstream(
            cfg.base_url,
            auth=auth if auth is not None else SecretFileAuth(bearer=cfg.token_file),
            timeout=cfg.timeout,
            user_agent=USER_AGENT,
            reset=reset_delta_seconds,
            transport=transport,
            clock=clock,
            sleep=sleep,
        )
        self.required = {p.ref: p.pitr_required for p in cfg.projects}
        # The newest snapshot, also after a refresh that failed in part: the projects it did
        # refresh are served as soon as they are known.
        self.latest = ManagementSnapshot()
        # Its own `_refresh_errors_total` is left out: supabase_management_errors_total (the
        # client's failed requests by the same reasons, which SupabaseManagementApiStale reads)
        # already counts what fails a refresh.
        self.loop = RefreshLoop(
            "supabase management",
            self.refresh,
            interval=cfg.refresh_interval,
            stale_after=cfg.stale_after,
            errors_metric=False,
            clock=clock,
            sleep=sleep,
        )

    async def aclose(self) -> None:
        await self.upstream.aclose()

    def known(self) -> list[str]:
        """Every project ref the refreshes know (for /sd), fresh or not."""
        return self.latest.refs()

    def view(self) -> ManagementView:
        """The projects refreshed within `stale_after`, and the client's figures now (call on
        the event loop that refreshes)."""
        now = self.clock()
        fresh = tuple(
            p for p in self.latest.projects if now - p.refreshed_at <= self.cfg.stale_after
        )
        record = self.record.view() if self.record is not None else None
        return ManagementView(fresh, tuple(self.upstream.metrics(PREFIX, WHAT)), record)

    async def refresh(self) -> ManagementSnapshot:
        """One refresh: discovery, then backups and health per project. Each project that
        answers replaces its previous state; one that fails keeps it. Raises UpstreamError
        (for the loop: back-off, no last-success) when any request failed."""
        try:
            return await self._refresh()
        except UpstreamError:
            raise
        except Exception as exc:  # a bug here must not stop the loop (nor the SQL scrapes)
            log.exception("management refresh crashed")
            raise UpstreamError("other", f"refresh crashed: {type(exc).__name__}") from None

    async def _refresh(self) -> ManagementSnapshot:
        cfg = self.cfg
        failed: list[tuple[str, UpstreamError]] = []
        refs = dict.fromkeys(self.required)
        listed: dict[str, dict[str, Any]] = {}
        if cfg.discover:
            try:
                listed = await self._fetch("projects", "/v1/projects", parse_projects)
            except UpstreamError as exc:
                failed.append(("projects", exc))
            for ref, p in listed.items():
                if p.get("status") in ACTIVE:
                    refs.setdefault(ref)
        projects = {p.ref: p for p in self.latest.projects}
        for ref in refs:
            meta = listed.get(ref, {})
            if meta and meta.get("status") not in ACTIVE:
                continue  # paused or removed: nothing to ask, nothing to alert on
            try:
                backups = await self._fetch(
                    "backups", f"/v1/projects/{ref}/database/backups", parse_backups
                )
                services = await self._fetch(
                    "health",
                    f"/v1/projects/{ref}/health",
                    lambda doc: parse_health(doc, cfg.services),
                    [("services", s) for s in cfg.services],
                )
            except UpstreamError as exc:
                failed.append((ref, exc))
                continue
            projects[ref] = ProjectSnapshot(
                ref=ref,
                name=str(meta.get("name", ""))[:100],
                region=str(meta.get("region", ""))[:40],
                status=str(meta.get("status", "")),
                pitr_required=self.required.get(ref, False),
                backups=backups,
                services=services,
                refreshed_at=self.clock(),
            )
            if self.record is not None:
                self.record.offer(ref, backups.entries, complete=backups.over_limit == 0)
        # Projects gone from the account (or paused) stop being reported.
        if cfg.discover and listed:
            for ref in list(projects):
                if ref not in refs or listed.get(ref, {}).get("status") not in (*ACTIVE, None):
                    del projects[ref]
        self.latest = ManagementSnapshot(tuple(projects[r] for r in sorted(projects)))
        if failed:
            raise _summary(failed)
        return self.latest

    async def _fetch(
        self, endpoint: str, path: str, parse: Callable[[Any], T], params: Any = None
    ) -> T:
        doc = await self.upstream.get_json(endpoint, path, params)
        try:
            return parse(doc)
        except UpstreamError:
            # JSON, but not of the documented shape: as malformed as a body that is not JSON.
            self.upstream.stats.errors["malformed"] += 1
            raise


def _summary(failed: list[tuple[str, UpstreamError]]) -> UpstreamError:
    """One error for the loop: the first failure's reason, every failure in the detail, and the
    latest time a rate limit said to come back."""
    detail = "; ".join(f"{where}: {exc.detail}" for where, exc in failed)
    waits = [exc.retry_at for _, exc in failed if exc.retry_at is not None]
    return UpstreamError(failed[0][1].reason, detail[:500], max(waits) if waits else None)


# --- the collector (pure) ------------------------------------------------------------------


def collect(view: ManagementView) -> list[Metric]:
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
    earliest = GaugeMetricFamily(
        "supabase_pitr_earliest_timestamp_seconds",
        "The earliest physical backup: the oldest time point-in-time recovery reaches (cached).",
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
    for p in view.projects:
        ref, b = p.ref, p.backups
        info.add_metric([ref], {"name": p.name, "region": p.region, "status": p.status})
        for st, n in b.counts:
            backups.add_metric([ref, st.lower()], n)
        if b.last_completed is not None:
            last_ok.add_metric([ref], b.last_completed)
        if b.last_failed is not None:
            last_bad.add_metric([ref], b.last_failed)
        if b.pitr is not None:
            pitr.add_metric([ref], 1.0 if b.pitr else 0.0)
        if b.walg is not None:
            walg.add_metric([ref], 1.0 if b.walg else 0.0)
        if b.pitr_window is not None:
            window.add_metric([ref], b.pitr_window)
        if b.pitr_earliest is not None:
            earliest.add_metric([ref], b.pitr_earliest)
        required.add_metric([ref], 1.0 if p.pitr_required else 0.0)
        for svc, st in p.services:
            health.add_metric([ref, svc], 1.0 if st == "ACTIVE_HEALTHY" else 0.0)
            status.add_metric([ref, svc, st.lower()], 1.0)
    record = (
        collect_record(
            view.record, ((p.ref, p.backups.invalid, p.backups.over_limit) for p in view.projects)
        )
        if view.record is not None
        else []
    )
    return [
        *view.api,
        info,
        backups,
        last_ok,
        last_bad,
        pitr,
        walg,
        window,
        earliest,
        required,
        health,
        status,
        *record,
    ]
