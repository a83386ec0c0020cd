"""/api/infrastructure/backups: POST asks the backup worker for a dump of a configured target
(the spec's CreateBackupRequest → BackupResponse), GET lists the record (BackupsListResponse,
with the newest restore drill of each target and type beside it).

Requests are rows, not calls: POST inserts a backup_status row in_progress with claimed_at NULL
(schema.backups.request_backup) and the worker (backups/) claims it; the API never runs pg_dump.
Both run as the caller under the spec's "Admin access to backup status" policy: anyone it does
not admit gets 403 (asked with a probe INSERT that is always rolled back, as /costs asks), before
anything about the targets is said.

Refusals of POST, in order: the body's shape, a backup_type other than database (422); not an
admin (403); no targets configured, an unknown or a Supabase target (422, naming the configured
ones); a backup of that target already requested or running (409 backup_conflict: one dump of a
target at a time, so a script looping on POST cannot pile up dumps).
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from psycopg.rows import dict_row
from pydantic import Field, StringConstraints

from api.alertmanager import rfc3339
from api.backups_config import BackupsSettings
from api.bodies import (
    Body,
    jsonable,
    no_query,
    parse_limit,
    parse_time,
    query_params,
    read_body,
)
from api.db import policy_admits
from api.errors import ApiError
from api.state import REQUEST_ID, SERVICES, caller
from schema import backups as record
from schema import writes

BACKUPS = web.AppKey("backups", BackupsSettings)
TABLE = "backup_status"
BYTES_PER_MB = 1e6
BYTES_PER_GB = 1e9
DAY = 86400.0
DEFAULT_LIMIT = 100
# pg_advisory_xact_lock(LOCK_CLASS, hashtext(target)) around the "already requested?" check and
# the insert ("wbkp"): two requests at the same moment cannot both pass it.
LOCK_CLASS = 0x77626B70
SUPABASE_PREFIX = "supabase:"

# "Admin access to backup status" (and the same policy on restore_drills, migration 0013):
# probe rows the policies judge like any other, never kept (api.db.policy_admits).
BACKUPS_PROBE = """
INSERT INTO backup_status (backup_type, backup_target, backup_method, backup_location)
VALUES ('database', 'wsinfra-api-probe', 'probe', 'probe')
"""
DRILLS_PROBE = """
INSERT INTO restore_drills (drill_type, backup_target) VALUES ('restore', 'wsinfra-api-probe')
"""
FORBIDDEN = "the backup_status policy admits admins only"

# A target as the record names them: a configured one, or supabase:<ref> for the mirror.
TargetRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")]
_TARGET = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$", re.ASCII)


def invalid(reason: str) -> ApiError:
    return ApiError("invalid_request", reason)


def timestamp(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def known_targets(settings: BackupsSettings) -> str:
    return ", ".join(settings.target_names)


def configured_target(settings: BackupsSettings, given: str | None) -> str:
    """The configured target a request means (the default when it names none); a 422 naming
    the configured ones otherwise. The input is never echoed."""
    if not settings.targets:
        raise invalid("no backup targets configured (backups.targets in the API's config)")
    if given is None:
        default = settings.default
        assert default is not None
        return default
    if given.startswith(SUPABASE_PREFIX):
        raise invalid(
            "Supabase projects are backed up by Supabase itself (daily, and point-in-time where "
            f"enabled); wsinfra takes dumps of its configured targets only: {known_targets(settings)}"
        )
    if given not in settings.target_names:
        raise invalid(f"unknown backup_target; configured targets: {known_targets(settings)}")
    return given


# --- POST ------------------------------------------------------------------------------------


class CreateBackupRequest(Body):
    """The spec's CreateBackupRequest."""

    backup_type: Literal["database", "files", "configuration"]
    backup_target: TargetRef | None = None
    retention_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    backup_notes: Annotated[str, StringConstraints(max_length=1000)] | None = None


_BUSY = """
SELECT id, started_at, claimed_at FROM backup_status
WHERE backup_target = %s AND backup_method = %s AND backup_status = 'in_progress'
ORDER BY started_at LIMIT 1
"""
_LAST_DUMP = """
SELECT id, duration_seconds, backup_size_bytes FROM backup_status
WHERE backup_target = %s AND backup_method = %s AND backup_status = 'completed'
ORDER BY completed_at DESC NULLS LAST LIMIT 1
"""


def estimate_minutes(seconds: float) -> int:
    """Whole minutes, rounded up, at least 1."""
    return max(1, math.ceil(seconds / 60))


async def post_backup(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = request.app[BACKUPS]
    who = await caller(request)
    no_query(request)
    req = await read_body(request, CreateBackupRequest, services.settings.max_body_bytes)
    if req.backup_type != "database":
        raise invalid(
            f"wsinfra backs up databases only: backup_type {req.backup_type} is not taken "
            "(configuration lives in Git, files in the platform's own storage)"
        )
    async with services.db.as_caller(who) as conn:
        if not await policy_admits(conn, BACKUPS_PROBE):
            raise ApiError("forbidden", FORBIDDEN)
        target = configured_target(settings, req.backup_target)
        retention = req.retention_days or settings.retention_policy.database_retention_days
        location = settings.location_of(target)
        await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, target))
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_BUSY, (target, record.PG_DUMP))
        busy = await cur.fetchone()
        if busy is not None:
            claimed = busy["claimed_at"] is not None
            state = "running" if claimed else "requested, not yet claimed by a worker"
            raise ApiError(
                "backup_conflict",
                f"a backup of {target} is already {state} (backup {busy['id']}, since "
                f"{rfc3339(busy['started_at'])}); wait for it to finish",
            )
        await cur.execute(_LAST_DUMP, (target, record.PG_DUMP))
        last = await cur.fetchone()
        row = await record.request_backup(
            conn,
            target=target,
            retention_days=retention,
            location=location,
            notes=req.backup_notes,
            requested_by=who.user_id,
        )
        source = last if last is not None and last["duration_seconds"] is not None else None
        seconds = settings.estimates.backup
        if source is not None:
            seconds = float(source["duration_seconds"])
        answer: dict[str, Any] = {
            "backup_id": str(row["id"]),
            "estimated_duration_minutes": estimate_minutes(seconds),
            "backup_location": row["backup_location"],
            "backup_target": target,
            "backup_status": row["backup_status"],
            "retention_days": retention,
            "requested_at": rfc3339(row["started_at"]),
            # The backup the estimate comes from (None: backups.estimates.backup).
            "estimated_from_backup_id": None if source is None else str(source["id"]),
        }
        if last is not None and last["backup_size_bytes"] is not None:
            answer["backup_size_estimate_mb"] = last["backup_size_bytes"] / BYTES_PER_MB
        await writes.append_audit(
            conn,
            who.audit(
                "backup.request",
                TABLE,
                str(row["id"]),
                None,
                jsonable({**row, "backup_notes": req.backup_notes, "answer": answer}),
                request[REQUEST_ID],
            ),
        )
    return web.json_response(answer, status=202)


# --- GET -------------------------------------------------------------------------------------

_LIST = """
SELECT id, backup_type, backup_target, backup_method, backup_size_bytes, backup_location,
       backup_retention_days, backup_status, error_message, started_at, completed_at,
       expires_at, removed_at, backup_notes, claimed_at, duration_seconds
FROM backup_status
WHERE (%(target)s::text IS NULL OR backup_target = %(target)s)
  AND (%(status)s::text IS NULL OR backup_status = %(status)s)
  AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s)
ORDER BY started_at DESC, id
LIMIT %(limit)s
"""
# The newest finished drill of each listed backup: which backups were proven restorable (the
# runbook's "prefer the newest backup whose drill passed").
_BACKUP_DRILLS = """
SELECT DISTINCT ON (backup_id) backup_id, id, status, finished_at, rto_seconds
FROM restore_drills
WHERE backup_id = ANY(%(ids)s) AND status IN ('passed', 'failed')
ORDER BY backup_id, finished_at DESC
"""
# Over every row of the target (or all), whatever the other filters: the summary describes the
# record, the list pages through it. The success rate is over the backups started in the last 30
# days, as the worker's backup_success_ratio.
_SUMMARY = """
SELECT count(*) FILTER (WHERE removed_at IS NULL) AS total,
       count(*) FILTER (WHERE removed_at IS NULL AND backup_status = 'completed') AS retained,
       coalesce(sum(backup_size_bytes)
           FILTER (WHERE removed_at IS NULL AND backup_status = 'completed'), 0) AS bytes,
       min(completed_at) FILTER (WHERE removed_at IS NULL AND backup_status = 'completed')
           AS oldest,
       count(*) FILTER (WHERE backup_status = 'completed'
           AND started_at > now() - INTERVAL '30 days') AS completed_recent,
       count(*) FILTER (WHERE backup_status = 'failed'
           AND started_at > now() - INTERVAL '30 days') AS failed_recent,
       now() AS now
FROM backup_status
WHERE (%(target)s::text IS NULL OR backup_target = %(target)s)
"""
_LATEST_DRILLS = """
SELECT DISTINCT ON (backup_target, drill_type)
       id, backup_target, drill_type, status, restore_into, trigger, backup_id, target_time,
       requested_at, started_at, finished_at, rto_seconds, rpo_seconds, restored_bytes, checks,
       error_message
FROM restore_drills
WHERE (%(target)s::text IS NULL OR backup_target = %(target)s)
ORDER BY backup_target, drill_type, requested_at DESC, id
"""


def backup_json(r: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": str(r["id"]),
        "backup_type": r["backup_type"],
        "backup_target": r["backup_target"],
        "backup_status": r["backup_status"],
        "started_at": rfc3339(r["started_at"]),
        # The spec types it a string; a backup that has not completed has no expiry yet.
        "expires_at": timestamp(r["expires_at"]),
        "backup_method": r["backup_method"],
        "removed_at": timestamp(r["removed_at"]),
        "error_message": r["error_message"],
        "location": r["backup_location"],
        "backup_retention_days": r["backup_retention_days"],
        "backup_notes": r["backup_notes"],
        "claimed_at": timestamp(r["claimed_at"]),
        "duration_seconds": r["duration_seconds"],
    }
    # Optional in the spec: absent rather than null.
    if r["backup_size_bytes"] is not None:
        item["backup_size_bytes"] = r["backup_size_bytes"]
    if r["completed_at"] is not None:
        item["completed_at"] = rfc3339(r["completed_at"])
    return item


def last_drill_json(d: dict[str, Any] | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {
        "id": str(d["id"]),
        "status": d["status"],
        "finished_at": timestamp(d["finished_at"]),
        "rto_seconds": d["rto_seconds"],
    }


def summary_json(s: dict[str, Any]) -> dict[str, Any]:
    finished = s["completed_recent"] + s["failed_recent"]
    oldest = s["oldest"]
    return {
        "total_backups": s["total"],
        "total_size_gb": float(s["bytes"]) / BYTES_PER_GB,
        "oldest_backup_days": 0.0 if oldest is None else (s["now"] - oldest).total_seconds() / DAY,
        # No finished backup in the window: no rate. Not 100 (no backup is not a success) and
        # not 0 (nothing failed either).
        "backup_success_rate_percent": (
            None if finished == 0 else s["completed_recent"] / finished * 100
        ),
        "retained_backups": s["retained"],
        "completed_last_30_days": s["completed_recent"],
        "failed_last_30_days": s["failed_recent"],
    }


def failed_checks(checks: Any) -> list[Any]:
    if not isinstance(checks, list):
        return []
    return [c for c in checks if isinstance(c, dict) and c.get("ok") is False]


def drill_json(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(d["id"]),
        "backup_target": d["backup_target"],
        "drill_type": d["drill_type"],
        "status": d["status"],
        "restore_into": d["restore_into"],
        "trigger": d["trigger"],
        "backup_id": None if d["backup_id"] is None else str(d["backup_id"]),
        "target_time": timestamp(d["target_time"]),
        "requested_at": rfc3339(d["requested_at"]),
        "started_at": timestamp(d["started_at"]),
        "finished_at": timestamp(d["finished_at"]),
        "rto_seconds": d["rto_seconds"],
        "rpo_seconds": d["rpo_seconds"],
        "restored_bytes": d["restored_bytes"],
        "failed_checks": failed_checks(d["checks"]),
        "error_message": d["error_message"],
    }


async def list_backups(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = request.app[BACKUPS]
    who = await caller(request)
    q = query_params(request, ("target", "status", "limit", "since"))
    target = q.get("target")
    if target is not None and not _TARGET.fullmatch(target):
        raise invalid("target must be a target's name (letters, digits, . _ : -; 1-200)")
    status = q.get("status")
    if status is not None and status not in record.BACKUP_STATUSES:
        raise invalid(f"status must be one of {', '.join(record.BACKUP_STATUSES)}")
    since = parse_time("since", q["since"]) if "since" in q else None
    limit = parse_limit(q.get("limit"), DEFAULT_LIMIT)
    params = {"target": target, "status": status, "since": since, "limit": limit}
    async with services.db.as_caller(who) as conn:
        if not await policy_admits(conn, BACKUPS_PROBE):
            raise ApiError("forbidden", FORBIDDEN)
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_LIST, params)
        found = await cur.fetchall()
        await cur.execute(_BACKUP_DRILLS, {"ids": [r["id"] for r in found]})
        proven = {d["backup_id"]: d for d in await cur.fetchall()}
        await cur.execute(_SUMMARY, params)
        summary = await cur.fetchone()
        await cur.execute(_LATEST_DRILLS, params)
        drills = await cur.fetchall()
    assert summary is not None
    policy = settings.retention_policy
    return web.json_response(
        {
            "backups": [
                {**backup_json(r), "last_drill": last_drill_json(proven.get(r["id"]))}
                for r in found
            ],
            "backup_summary": summary_json(summary),
            "retention_policy": {
                "database_retention_days": policy.database_retention_days,
                "files_retention_days": policy.files_retention_days,
                "configuration_retention_days": policy.configuration_retention_days,
            },
            "latest_drills": [drill_json(d) for d in drills],
        }
    )
