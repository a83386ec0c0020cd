"""Planned maintenance windows: /api/infrastructure/maintenance (admins declare, list, end), the
windows file synced as code, the `api_maintenance_window_active` metric the SLO rules read, and
services_in_maintenance for /health.

A window names alert `service` label values (maintenance.services) and a time range. Each
window is one Alertmanager silence (matchers service="a" or service=~"a|b"), created when the
window is declared (Alertmanager holds future silences as pending) and ending with it; ending a
window early expires its silence.

Refusals, in order: the body's shape, an unknown service, ends before it starts, longer than
maintenance.max_window, over already, or starting further back than maintenance.start_grace
(422); not an admin (403, the table's row-level security); overlapping a window of a same
service, or taking a service over maintenance.monthly_budget in a calendar month (UTC) (409).
Overlap and budget are checked under one transaction-level advisory lock taken by every writer
(API and file sync), so two concurrent requests cannot both pass the check.

Ordering of the database and Alertmanager is api/alerts.py's: the row and every check first,
inside the caller's transaction; then the one Alertmanager call (a failure rolls back: nothing
written, 503/502); then the audit row and the commit. If they fail after Alertmanager acted, the
silence is expired again (or, for an ended window, made again for the rest of it) and the
answer is 503; api_alertmanager_compensations counts it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import psycopg
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout
from pydantic import Field, StringConstraints

from api.alertmanager import rfc3339
from api.alerts import alertmanager_call, take_back
from api.auth import Identity
from api.bodies import Body, jsonable, no_query, parse_time, read_body
from api.config import ApiConfig, Machine
from api.db import Database
from api.errors import ApiError
from api.maintenance_config import (
    MAX_SERVICES_PER_WINDOW,
    MaintenanceSettings,
    Reason,
    ServiceName,
    Window,
    config_window_id,
    months,
    overlap_seconds,
)
from api.state import REQUEST_ID, SERVICES, Services, caller
from schema import writes
from schema.rows import AuditEntry

log = logging.getLogger(__name__)
T = TypeVar("T")
TABLE = "maintenance_windows"
# Every writer of maintenance_windows takes this transaction-level lock before its checks
# ("wmaint"): the overlap and budget checks then see every committed window.
LOCK_KEY = 0x776D61696E74
# GET lists windows still to come, running, and those that ended within this long.
RECENT = timedelta(days=7)
MAX_LISTED = 500
# A scrape or a health probe must answer while the database is away.
QUICK_TIMEOUT = 2.0


# --- what the API and the rules read ---------------------------------------------------------


async def services_in_maintenance(conn: psycopg.AsyncConnection[Any]) -> frozenset[str]:
    """The services with a window active now, on a connection that may execute
    public.wsinfra_services_in_maintenance() (migration 0011; granted to authenticated): a
    caller's transaction (Database.as_caller), or the API's own connection after
    `SET LOCAL ROLE authenticated` (the login role may be NOINHERIT), as refresh_gauge does.
    The function runs as its owner, so no caller is needed. Database errors propagate."""
    cur = await conn.execute("SELECT s FROM public.wsinfra_services_in_maintenance() AS s")
    return frozenset(str(r[0]) for r in await cur.fetchall())


class ActiveGauge:
    """api_maintenance_window_active{service}: 1 while a window of that service runs, 0 when
    none does, for every configured service from the start; nothing at all while the database
    cannot be read (refresh sets None), because the rules take a missing mark for "no window"
    and count the minutes as usual, which is the safe direction."""

    HELP = (
        "1 while a planned maintenance window of the service is active, 0 otherwise; absent "
        "when the API cannot read the windows (the SLO rules then count every minute)."
    )

    def __init__(self, services: tuple[str, ...]) -> None:
        self.services = services
        self.active: frozenset[str] | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        if self.active is None:
            return []
        family = GaugeMetricFamily("api_maintenance_window_active", self.HELP, labels=["service"])
        for service in self.services:
            family.add_metric([service], 1.0 if service in self.active else 0.0)
        return [family]


class SyncGauge:
    """api_maintenance_config_sync_ok: whether the last sync of the windows file applied it
    whole (absent without a windows file)."""

    def __init__(self) -> None:
        self.ok: bool | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        if self.ok is None:
            return []
        family = GaugeMetricFamily(
            "api_maintenance_config_sync_ok",
            "1 when the last sync of maintenance.windows_file applied every window in it; 0 when "
            "the file could not be read, the database or Alertmanager failed, or a window was "
            "refused (the log says which and why).",
        )
        family.add_metric([], 1.0 if self.ok else 0.0)
        return [family]


@dataclass(slots=True)
class Maintenance:
    settings: MaintenanceSettings
    gauge: ActiveGauge
    sync_gauge: SyncGauge
    # The admin machine the windows file is written as (None without a windows file).
    machine: Machine | None = None
    # The file's windows as last read and found valid.
    file_windows: tuple[Window, ...] = ()
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


MAINTENANCE = web.AppKey("maintenance", Maintenance)


async def read_active(db: Database) -> frozenset[str] | None:
    """The services with a window active now, read with the API's own login role; None when
    the database cannot say (down, not migrated)."""
    try:
        async with (
            db.pool.connection(timeout=min(QUICK_TIMEOUT, db.cfg.acquire_timeout)) as conn,
            conn.transaction(force_rollback=True),
        ):
            # The login role may be NOINHERIT (docs/operator-api.md): act as `authenticated`,
            # which may execute the function, without claims (no caller: no rows of its own).
            await conn.execute("SET LOCAL ROLE authenticated")
            await conn.execute("SET LOCAL statement_timeout = 2000")
            return await services_in_maintenance(conn)
    except (psycopg.Error, PoolTimeout) as exc:
        log.debug("maintenance windows unreadable", extra={"error": type(exc).__name__})
        return None


async def refresh_gauge(app: web.Application) -> None:
    """Read the active windows for this scrape (api.app's /metrics calls it)."""
    app[MAINTENANCE].gauge.active = await read_active(app[SERVICES].db)


# --- the request body and the window's JSON --------------------------------------------------

# RFC 3339 with an offset; parsed by datetime.fromisoformat after this shape check.
_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$"
Time = Annotated[str, StringConstraints(pattern=_TIME)]
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class WindowRequest(Body):
    services: Annotated[list[ServiceName], Field(min_length=1, max_length=MAX_SERVICES_PER_WINDOW)]
    starts_at: Time
    ends_at: Time
    reason: Reason


# Every query reads whole rows (SELECT *, RETURNING *): window_json and the audit use them all.


def _state(row: dict[str, Any], now: datetime) -> str:
    if row["effective_ends_at"] <= now or row["effective_ends_at"] <= row["starts_at"]:
        return "ended"
    return "active" if row["starts_at"] <= now else "upcoming"


def window_json(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    def t(value: datetime | None) -> str | None:
        return None if value is None else rfc3339(value)

    return {
        "id": str(row["id"]),
        "services": list(row["services"]),
        "starts_at": t(row["starts_at"]),
        "ends_at": t(row["ends_at"]),
        "ended_at": t(row["ended_at"]),
        "state": _state(row, now),
        "reason": row["reason"],
        "source": row["source"],
        "created_by": str(row["created_by"]),
        "created_at": t(row["created_at"]),
        "ended_by": None if row["ended_by"] is None else str(row["ended_by"]),
        "silence_id": row["silence_id"],
    }


# --- the checks ------------------------------------------------------------------------------

_OVERLAP = """
SELECT * FROM maintenance_windows
WHERE id <> %s AND services && %s::text[]
  AND starts_at < %s AND effective_ends_at > %s AND effective_ends_at > starts_at
ORDER BY starts_at, id
LIMIT 1
"""

_USED = """
SELECT s, sum(EXTRACT(EPOCH FROM LEAST(w.effective_ends_at, %(end)s) - GREATEST(w.starts_at, %(start)s)))
FROM maintenance_windows AS w CROSS JOIN LATERAL unnest(w.services) AS s
WHERE w.id <> %(id)s AND s = ANY(%(services)s)
  AND w.starts_at < %(end)s AND w.effective_ends_at > %(start)s
GROUP BY s
"""


def check_shape(settings: MaintenanceSettings, w: Window, now: datetime, *, grace: bool) -> None:
    """422 for a window wrong in itself, over already, or (grace=True: declared through the
    API) starting further back than start_grace."""
    why = settings.shape_problem(w)
    if why is not None:
        raise ApiError("invalid_request", why)
    if w.ends_at <= now:
        raise ApiError("invalid_request", f"the window ended at {rfc3339(w.ends_at)}: it is past")
    if w.starts_at > now + timedelta(seconds=settings.max_ahead):
        raise ApiError(
            "invalid_request",
            f"starts_at is {rfc3339(w.starts_at)}, more than maintenance.max_ahead "
            f"({settings.max_ahead / 86400:g} days) ahead",
        )
    if grace and w.starts_at < now - timedelta(seconds=settings.start_grace):
        raise ApiError(
            "invalid_request",
            f"starts_at is {rfc3339(w.starts_at)}, more than maintenance.start_grace "
            f"({settings.start_grace:g} s) ago: maintenance is declared before it starts",
        )


async def check_conflicts(
    conn: psycopg.AsyncConnection[Any],
    settings: MaintenanceSettings,
    window_id: uuid.UUID,
    w: Window,
) -> None:
    """409 when the window overlaps another of a same service or exceeds a service's monthly
    budget. The caller holds LOCK_KEY, and reads every window (admins do)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_OVERLAP, (window_id, list(w.services), w.ends_at, w.starts_at))
    other = await cur.fetchone()
    if other is not None:
        common = sorted(set(w.services) & set(other["services"]))
        raise ApiError(
            "maintenance_conflict",
            f"overlaps maintenance window {other['id']} ({rfc3339(other['starts_at'])} to "
            f"{rfc3339(other['effective_ends_at'])}) for {', '.join(common)}",
        )
    for start, end in months(w):
        cur2 = await conn.execute(
            _USED, {"id": window_id, "services": list(w.services), "start": start, "end": end}
        )
        used = {str(s): float(v) for s, v in await cur2.fetchall()}
        mine = overlap_seconds(w, start, end)
        for service in w.services:
            total = used.get(service, 0.0) + mine
            if total > settings.monthly_budget:
                raise ApiError(
                    "maintenance_conflict",
                    f"{service} would have {total / 3600:.2f} h of planned maintenance in "
                    f"{start:%Y-%m} ({used.get(service, 0.0) / 3600:.2f} h already), over the "
                    f"monthly budget of {settings.monthly_budget / 3600:g} h",
                )


# --- Alertmanager ----------------------------------------------------------------------------


def silence_for(window_id: uuid.UUID, w: Window, starts: datetime, who: Identity) -> dict[str, Any]:
    """The window's silence: every alert of its services, from `starts` to its end."""
    if len(w.services) == 1:
        matcher = {"name": "service", "value": w.services[0], "isRegex": False, "isEqual": True}
    else:
        # Alertmanager anchors the regex; names are [a-z0-9_-] (no metacharacters), escaped
        # anyway.
        value = "|".join(re.escape(s) for s in w.services)
        matcher = {"name": "service", "value": value, "isRegex": True, "isEqual": True}
    return {
        "matchers": [matcher],
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(w.ends_at),
        "createdBy": who.display,
        "comment": f"Planned maintenance (window {window_id}): {w.reason}"[:1000],
    }


async def _expire(services: Services, silence_id: str | None) -> None:
    """Expire a window's silence unless Alertmanager already has it expired or gone (expiring
    an expired silence is an error there)."""
    if silence_id is None:
        return
    state = await alertmanager_call(services, services.alertmanager.silence_state(silence_id))
    if state in ("active", "pending"):
        await alertmanager_call(services, services.alertmanager.expire_silence(silence_id))


# --- the writes (shared by the API and the file sync) ----------------------------------------

_INSERT = """
INSERT INTO maintenance_windows (id, services, starts_at, ends_at, reason, source, created_by)
VALUES (%s, %s, %s, %s, %s, %s, %s)
RETURNING *
"""
_SET_SILENCE = "UPDATE maintenance_windows SET silence_id = %s WHERE id = %s RETURNING *"
_LOCK_ROW = "SELECT * FROM maintenance_windows WHERE id = %s FOR UPDATE"
_END = """
UPDATE maintenance_windows SET ended_at = now(), ended_by = %s WHERE id = %s
RETURNING *
"""
# A window the policies judge like any other; never kept (see may_plan).
_PROBE = """
INSERT INTO maintenance_windows (services, starts_at, ends_at, reason, source, created_by)
VALUES (ARRAY['wsinfra-api-probe'], now(), now() + INTERVAL '1 second', 'probe', 'api', %s)
"""


def _audit(
    who: Identity,
    request_id: str,
    action: str,
    target_id: uuid.UUID,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEntry:
    return who.audit(
        action,
        TABLE,
        str(target_id),
        None if before is None else jsonable(before),
        None if after is None else jsonable(after),
        request_id,
    )


async def may_plan(conn: psycopg.AsyncConnection[Any], who: Identity) -> bool:
    """Whether the policies let the caller write windows: an INSERT under a savepoint that is
    always rolled back (the policy answers; no role list in Python)."""
    try:
        async with conn.transaction():
            await conn.execute(_PROBE, (who.user_id,))
            raise psycopg.Rollback()
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


async def create_window(
    services: Services,
    m: Maintenance,
    who: Identity,
    request_id: str,
    window_id: uuid.UUID,
    w: Window,
    source: Literal["api", "config"],
) -> dict[str, Any]:
    """Write the window and make its silence (the module doc's ordering); the row, as read
    back. Raises ApiError for every refusal."""
    undo: Callable[[], Awaitable[object]] | None = None
    try:
        async with services.db.as_caller(who) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            cur = conn.cursor(row_factory=dict_row)
            # First, so that row-level security refuses a non-admin before anything else.
            await cur.execute(
                _INSERT,
                (
                    window_id,
                    list(w.services),
                    w.starts_at,
                    w.ends_at,
                    w.reason,
                    source,
                    who.user_id,
                ),
            )
            await check_conflicts(conn, m.settings, window_id, w)
            now = datetime.now(UTC)
            silence = silence_for(window_id, w, max(now, w.starts_at), who)
            silence_id = await alertmanager_call(
                services, services.alertmanager.create_silence(silence)
            )
            undo = lambda: services.alertmanager.expire_silence(silence_id)  # noqa: E731
            await cur.execute(_SET_SILENCE, (silence_id, window_id))
            row = await cur.fetchone()
            assert row is not None
            await writes.append_audit(
                conn,
                _audit(
                    who,
                    request_id,
                    "maintenance.create",
                    window_id,
                    None,
                    {**row, "alertmanager": {"silence": silence}},
                ),
            )
    except BaseException:
        if undo is not None:
            await take_back(services, "create maintenance silence", undo)
        raise
    return row


async def end_window(
    services: Services, who: Identity, request_id: str, window_id: uuid.UUID
) -> dict[str, Any]:
    """End a window now (before it starts: it never covers anything) and expire its silence."""
    undo: Callable[[], Awaitable[object]] | None = None
    try:
        async with services.db.as_caller(who) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_LOCK_ROW, (window_id,))
            before = await cur.fetchone()
            if before is None:
                # Row-level security hides rows without saying why: an admin who sees none has
                # named no window; anyone else may not end windows, whether it exists or not.
                if await may_plan(conn, who):
                    raise ApiError("not_found", "no maintenance window with this id")
                raise ApiError(
                    "forbidden", "row-level security does not let you end maintenance windows"
                )
            now = datetime.now(UTC)
            if _state(before, now) == "ended":
                ended_at = before.get("ended_at")
                raise ApiError(
                    "maintenance_conflict",
                    f"the window was already ended or cancelled at {rfc3339(ended_at)}"
                    if ended_at is not None
                    else f"the window is already over (it ended at {rfc3339(before['ends_at'])})",
                )
            await cur.execute(_END, (who.user_id, window_id))
            after = await cur.fetchone()
            assert after is not None
            await _expire(services, before["silence_id"])
            if before["silence_id"] is not None:
                w = Window(
                    tuple(before["services"]),
                    before["starts_at"],
                    before["ends_at"],
                    before["reason"],
                )
                again = silence_for(window_id, w, max(now, w.starts_at), who)

                async def remake() -> None:
                    # An expired silence cannot be revived: a new one for the rest of the window.
                    new_id = await services.alertmanager.create_silence(again)
                    log.error(
                        "maintenance window kept after a failed end; its silence was made again",
                        extra={"window": str(window_id), "silence_id": new_id},
                    )

                undo = remake
            await writes.append_audit(
                conn, _audit(who, request_id, "maintenance.end", window_id, before, after)
            )
    except BaseException:
        if undo is not None:
            await take_back(services, "expire maintenance silence", undo)
        raise
    return after


# --- the routes ------------------------------------------------------------------------------

_LIST = """
SELECT * FROM maintenance_windows
WHERE effective_ends_at > now() - %s
ORDER BY starts_at, id
LIMIT %s
"""


async def list_windows(request: web.Request) -> web.Response:
    """Windows to come, running, and ended within RECENT, as the caller's policies show them
    (admin, developer, ops; anyone else gets an empty list)."""
    services = request.app[SERVICES]
    who = await caller(request)
    no_query(request)
    async with services.db.as_caller(who) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_LIST, (RECENT, MAX_LISTED))
        found = await cur.fetchall()
    now = datetime.now(UTC)
    return web.json_response(
        {
            "windows": [window_json(r, now) for r in found],
            "monthly_budget_seconds": request.app[MAINTENANCE].settings.monthly_budget,
        }
    )


async def post_window(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    m = request.app[MAINTENANCE]
    who = await caller(request)
    no_query(request)
    req = await read_body(request, WindowRequest, services.settings.max_body_bytes)
    if len(set(req.services)) != len(req.services):
        raise ApiError("invalid_request", "services: a service is listed twice")
    w = Window(
        tuple(sorted(req.services)),
        parse_time("starts_at", req.starts_at),
        parse_time("ends_at", req.ends_at),
        req.reason,
    )
    check_shape(m.settings, w, datetime.now(UTC), grace=True)
    row = await create_window(services, m, who, request[REQUEST_ID], uuid.uuid4(), w, "api")
    return web.json_response(window_json(row, datetime.now(UTC)), status=201)


async def delete_window(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await caller(request)
    no_query(request)
    text = request.match_info["id"]
    if not _UUID.fullmatch(text):
        raise ApiError("invalid_request", "the window id must be a UUID")
    row = await end_window(services, who, request[REQUEST_ID], uuid.UUID(text))
    return web.json_response(window_json(row, datetime.now(UTC)))


# --- windows as code -------------------------------------------------------------------------

_CONFIG_ROWS = """
SELECT * FROM maintenance_windows
WHERE source = 'config' AND effective_ends_at > now() AND effective_ends_at > starts_at
"""


async def sync_config(services: Services, m: Maintenance) -> bool:
    """Make the database hold the windows file's windows that are not over, and end the config
    windows the file no longer has; True when all of it was applied. Idempotent: a window's id
    is derived from its entry (config_window_id), so a second run finds every one in place."""
    settings = m.settings
    if settings.windows_file is None or m.machine is None:
        return True
    try:
        windows = settings.read_windows()
        problems = settings.file_problems(windows)
    except ValueError as exc:
        problems = [str(exc)]
    if problems:
        # A bad edit at runtime: keep applying what was there before (a start refuses it).
        log.error(
            "maintenance windows file refused; the previous content stays in force",
            extra={"file": str(settings.windows_file), "problems": problems[:5]},
        )
        windows = m.file_windows
    else:
        m.file_windows = windows
    who = services.auth.acting_as(m.machine)
    request_id = f"maintenance-sync-{uuid.uuid4().hex[:12]}"
    desired = {config_window_id(w): w for w in windows}
    ok = not problems
    async with services.db.as_caller(who) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_CONFIG_ROWS)
        current = {r["id"]: r for r in await cur.fetchall()}
        cur2 = await conn.execute(
            "SELECT id FROM maintenance_windows WHERE id = ANY(%s)", (list(desired),)
        )
        known = {r[0] for r in await cur2.fetchall()}
    now = datetime.now(UTC)
    for window_id in sorted(set(current) - set(desired)):
        try:
            await end_window(services, who, request_id, window_id)
            log.info(
                "maintenance window ended: gone from the file", extra={"window": str(window_id)}
            )
        except ApiError as exc:
            ok = ok and exc.code == "maintenance_conflict"  # ended meanwhile: nothing to do
            if exc.code != "maintenance_conflict":
                log.error(
                    "maintenance window gone from the file could not be ended",
                    extra={"window": str(window_id), "reason": exc.reason},
                )
    for window_id, w in desired.items():
        if window_id in known or w.ends_at <= now:
            continue  # in place already, or over (the file keeps its history)
        try:
            check_shape(settings, w, now, grace=False)
            await create_window(services, m, who, request_id, window_id, w, "config")
            log.info(
                "maintenance window from the file",
                extra={"window": str(window_id), "services": list(w.services)},
            )
        except ApiError as exc:
            ok = False
            log.error(
                "maintenance window of the file refused",
                extra={
                    "window": str(window_id),
                    "starts_at": rfc3339(w.starts_at),
                    "services": list(w.services),
                    "reason": exc.reason,
                },
            )
    return ok


async def sync_forever(services: Services, m: Maintenance) -> None:
    """Sync the windows file at start and every sync_interval (retried while the database,
    Alertmanager or the machine user is not there yet)."""
    while True:
        if services.machines_provisioned:
            try:
                async with m.lock:
                    m.sync_gauge.ok = await sync_config(services, m)
            except ApiError as exc:
                m.sync_gauge.ok = False
                log.warning("maintenance windows file not synced", extra={"reason": exc.reason})
        await asyncio.sleep(m.settings.sync_interval if m.sync_gauge.ok is not None else 0.5)


def install(app: web.Application, cfg: ApiConfig, registry: CollectorRegistry, prefix: str) -> None:
    """The routes, the metrics and (with a windows file) the sync task, on `app`."""
    settings = cfg.maintenance
    machine = None
    if settings.windows_file is not None:
        # The config validator made sure it names an admin machine_tokens entry.
        machine = next(m for m in app[SERVICES].machines if m.name == settings.machine)
    m = Maintenance(settings, ActiveGauge(settings.services), SyncGauge(), machine)
    m.file_windows = settings.read_windows() if settings.windows_file is not None else ()
    app[MAINTENANCE] = m
    registry.register(m.gauge)
    registry.register(m.sync_gauge)
    app.router.add_get(f"{prefix}/maintenance", list_windows)
    app.router.add_post(f"{prefix}/maintenance", post_window)
    app.router.add_delete(f"{prefix}/maintenance/{{id}}", delete_window)

    if machine is not None:

        async def syncing(app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(sync_forever(app[SERVICES], m))
            try:
                yield
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        app.cleanup_ctx.append(syncing)
