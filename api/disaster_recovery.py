"""POST /api/infrastructure/disaster-recovery: the spec's DisasterRecoveryRequest →
DisasterRecoveryResponse, a recovery plan whose estimates come from the restore drills the
backup worker measured; and GET /disaster-recovery/{id}, an executed restore followed up.

The plan (docs/disaster-recovery.md, "Steps", lists exactly the step names below):

- backup_restore: restore throughput = the median of restored_bytes / rto_seconds over the
  target's newest passed `restore` drills (backups.estimates.drill_sample, 5), times today's
  database size (Prometheus `backup_source_size_bytes{target}`, else the newest backup's
  manifest `database_size_bytes`). The drills measure start to verified, so the figure covers
  restore and verification. Data-loss risk from the age of the backup restored
  (backups.data_loss_risk).
- point_in_time: the same base restore, plus WAL replay taken from the newest passed
  `point_in_time` drill (its RTO less what restoring its restored_bytes takes at that
  throughput). The target time must lie in the point-in-time window (self-hosted targets:
  `backup_pitr_earliest/latest_timestamp_seconds{target}`; Supabase projects:
  `supabase_pitr_earliest_timestamp_seconds{project}` up to now, or, from an older exporter,
  `supabase_pitr_window_seconds{project}` back from the newest completed backup);
  outside it, or with no window known, the request is refused (422) with the reason and the
  window. Supabase's point-in-time restore is done in Supabase (dashboard or support): the plan
  says so and nothing here calls a restore endpoint.
- failover: the configured steps (backups.failover_steps: the Supabase read replica promoted in
  the standby region, the application pointed at it), against the spec's 2-minute RTO.

Nothing measured → the answer's estimate_basis says so and the configured conservative defaults
(backups.estimates) are used. A dry run (the default) changes nothing and is not audited (it is
a read). A non-dry run executes only a backup_restore of a configured target into a configured
non-production restore target (backups.restore_targets) named again in `confirm`: one
restore_drills row `requested` that the worker claims, audited ('dr.restore'); recovery_id is
that row's id.

Who may: the admin-only policy of restore_drills and backup_status (migration 0013, the spec's
0003), probed before anything is looked up; anyone else gets 403.
"""

from __future__ import annotations

import logging
import math
import re
import statistics
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import psycopg
from aiohttp import web
from psycopg.rows import dict_row
from pydantic import StringConstraints

from api.alertmanager import rfc3339
from api.auth import Identity
from api.backups import (
    BACKUPS,
    DRILLS_PROBE,
    TargetRef,
    drill_json,
    invalid,
    timestamp,
)
from api.backups_config import BackupsSettings
from api.bodies import Body, jsonable, no_query, parse_time, read_body
from api.db import policy_admits
from api.errors import ApiError
from api.infra_metrics import prometheus_call
from api.prometheus import finite
from api.state import REQUEST_ID, SERVICES, Services, caller
from schema import backups as record
from schema import writes

log = logging.getLogger(__name__)

TABLE = "restore_drills"
FORBIDDEN = "the restore_drills policy admits admins only"
# pg_advisory_xact_lock(LOCK_CLASS, hashtext(restore target)) around the "already restoring
# into it?" check and the insert ("wdrr").
LOCK_CLASS = 0x77647272
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID_RE = re.compile(_UUID)
_SUPABASE_TARGET = re.compile(r"^supabase:([a-z0-9]{1,40})$")

# --- the steps (docs/disaster-recovery.md, "Steps", has exactly these names) ------------------

PREPARE = "Declare the incident and stop writes to the damaged database"
RESTORE = "Restore the backup into a new database and verify it"
PITR_BASE = "Restore the base backup taken before the target time"
PITR_REPLAY = "Replay WAL up to the target time and verify"
SWITCH = "Point the application at the restored database"
CONFIRM = "Confirm the recovery: error rates, alerts, smoke queries"
SUPABASE_RESTORE = "Restore the backup in the Supabase dashboard (Database > Backups)"
SUPABASE_PITR = "Start the point-in-time restore in Supabase (dashboard or support)"

Risk = Literal["none", "minimal", "moderate", "significant"]


class DisasterRecoveryRequest(Body):
    """The spec's DisasterRecoveryRequest, plus what a plan or a restore needs to name: the
    target, and for an executed restore the restore target and its confirmation."""

    recovery_type: Literal["point_in_time", "backup_restore", "failover"]
    target_time: str | None = None
    backup_id: Annotated[str, StringConstraints(pattern=_UUID)] | None = None
    recovery_scope: Literal["full", "database_only", "files_only"]
    dry_run: bool = True
    # A configured target or supabase:<ref>; default: the backup's, else backups.default_target.
    backup_target: TargetRef | None = None
    # Non-dry runs: one of backups.restore_targets, and `confirm` equal to it.
    restore_target: TargetRef | None = None
    confirm: Annotated[str, StringConstraints(max_length=200)] | None = None


@dataclass(slots=True)
class Step:
    name: str
    seconds: float
    dependencies: tuple[str, ...] = ()


@dataclass(slots=True)
class Estimate:
    """How the restore figures were arrived at (the answer's estimate_basis)."""

    restore_seconds: float | None = None
    restore_measured: bool = False
    drills_used: int = 0
    throughput: float | None = None
    size_bytes: float | None = None
    size_source: str | None = None
    wal_replay_seconds: float | None = None
    wal_replay_measured: bool | None = None
    pitr_drill_id: str | None = None
    explanation: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "restore_measured": self.restore_measured,
            "restore_drills_used": self.drills_used,
            "restore_throughput_bytes_per_second": self.throughput,
            "database_size_bytes": self.size_bytes,
            "database_size_source": self.size_source,
            "restore_seconds": self.restore_seconds,
            "wal_replay_measured": self.wal_replay_measured,
            "wal_replay_seconds": self.wal_replay_seconds,
            "point_in_time_drill_id": self.pitr_drill_id,
            "explanation": " ".join(self.explanation),
        }


def minutes(seconds: float) -> float:
    """Minutes rounded up to a tenth."""
    return math.ceil(round(seconds / 6, 9)) / 10


def critical_path(steps: list[Step]) -> float:
    """Seconds until the last step ends, each step starting when its dependencies have ended."""
    ends: dict[str, float] = {}
    for s in steps:
        ends[s.name] = s.seconds + max((ends[d] for d in s.dependencies), default=0.0)
    return max(ends.values(), default=0.0)


def plan_json(steps: list[Step], risk: Risk) -> dict[str, Any]:
    return {
        "estimated_duration_minutes": minutes(critical_path(steps)),
        "steps": [
            {
                "step_name": s.name,
                "estimated_duration_minutes": minutes(s.seconds),
                "dependencies": list(s.dependencies),
                "estimated_duration_seconds": s.seconds,
            }
            for s in steps
        ],
        "data_loss_risk": risk,
    }


def age_risk(settings: BackupsSettings, age_seconds: float) -> Risk:
    t = settings.data_loss_risk
    if age_seconds <= t.none_within:
        return "none"
    if age_seconds <= t.minimal_within:
        return "minimal"
    if age_seconds <= t.moderate_within:
        return "moderate"
    return "significant"


def median_throughput(drills: list[dict[str, Any]]) -> float | None:
    rates = [float(d["restored_bytes"]) / float(d["rto_seconds"]) for d in drills]
    return statistics.median(rates) if rates else None


def restore_estimate(
    settings: BackupsSettings,
    target: str,
    drills: list[dict[str, Any]],
    size: float | None,
    size_source: str | None,
) -> Estimate:
    """The restore (and verification) of `target`'s database today, from its drills."""
    defaults = settings.estimates
    e = Estimate(size_bytes=size, size_source=size_source, drills_used=len(drills))
    measured = median_throughput(drills)
    if measured is not None:
        e.restore_measured = True
        e.throughput = measured
        if size is not None:
            e.restore_seconds = size / measured
            e.explanation.append(
                f"restore: {size:.0f} bytes ({size_source}) at the median throughput of the "
                f"newest {len(drills)} passed restore drill(s) of {target}, {measured:.0f} "
                "bytes/s (restore and verification)."
            )
        else:
            e.restore_seconds = statistics.median(float(d["rto_seconds"]) for d in drills)
            e.explanation.append(
                f"restore: the database's size is unknown, so the median RTO of the newest "
                f"{len(drills)} passed restore drill(s) of {target}."
            )
    elif size is not None:
        e.throughput = defaults.restore_bytes_per_second
        e.restore_seconds = size / defaults.restore_bytes_per_second
        e.explanation.append(
            f"restore: no restore drill of {target} has passed, so nothing is measured: "
            f"{size:.0f} bytes ({size_source}) at the conservative default of "
            f"{defaults.restore_bytes_per_second:.0f} bytes/s "
            "(backups.estimates.restore_bytes_per_second)."
        )
    else:
        e.restore_seconds = defaults.restore
        e.explanation.append(
            f"restore: no restore drill of {target} has passed and its size is unknown: the "
            f"conservative default of {defaults.restore / 60:g} minutes (backups.estimates.restore)."
        )
    return e


def add_wal_replay(settings: BackupsSettings, e: Estimate, pitr: dict[str, Any] | None) -> None:
    """WAL replay: the newest passed point-in-time drill's RTO beyond restoring its bytes."""
    if pitr is None:
        e.wal_replay_measured = False
        e.wal_replay_seconds = settings.estimates.wal_replay
        e.explanation.append(
            "WAL replay: no point-in-time drill has passed, so the conservative default of "
            f"{settings.estimates.wal_replay / 60:g} minutes (backups.estimates.wal_replay)."
        )
        return
    rto = float(pitr["rto_seconds"])
    restored = pitr["restored_bytes"]
    e.wal_replay_measured = True
    e.pitr_drill_id = str(pitr["id"])
    if restored is not None and e.throughput is not None:
        e.wal_replay_seconds = max(0.0, rto - float(restored) / e.throughput)
        e.explanation.append(
            f"WAL replay: the newest passed point-in-time drill ({pitr['id']}) took {rto:g} s, "
            f"of which restoring its {restored} bytes explains {float(restored) / e.throughput:g} s."
        )
    else:
        e.wal_replay_seconds = rto
        e.explanation.append(
            f"WAL replay: the whole RTO of the newest passed point-in-time drill ({pitr['id']}), "
            f"{rto:g} s."
        )


# --- what the record says ---------------------------------------------------------------------

_DRILLS = """
SELECT id, restored_bytes, rto_seconds FROM restore_drills
WHERE backup_target = %s AND drill_type = 'restore' AND status = 'passed'
  AND restored_bytes > 0 AND rto_seconds > 0
ORDER BY finished_at DESC NULLS LAST, requested_at DESC
LIMIT %s
"""
_PITR_DRILL = """
SELECT id, restored_bytes, rto_seconds FROM restore_drills
WHERE backup_target = %s AND drill_type = 'point_in_time' AND status = 'passed'
  AND rto_seconds IS NOT NULL
ORDER BY finished_at DESC NULLS LAST, requested_at DESC
LIMIT 1
"""
_MANIFEST_SIZE = """
SELECT (manifest->>'database_size_bytes')::numeric FROM backup_status
WHERE backup_target = %s AND backup_status = 'completed'
  AND jsonb_typeof(manifest->'database_size_bytes') = 'number'
ORDER BY completed_at DESC NULLS LAST LIMIT 1
"""
# Any method: a Supabase project's newest backup is a mirrored row.
_NEWEST_ANY = """
SELECT id, backup_target, backup_method, backup_location, backup_size_bytes, manifest,
       backup_status, started_at, completed_at, expires_at, removed_at
FROM backup_status
WHERE backup_target = %s AND backup_status = 'completed' AND removed_at IS NULL
ORDER BY completed_at DESC NULLS LAST LIMIT 1
"""
_BUSY = """
SELECT id, status, requested_at FROM restore_drills
WHERE restore_into = %s AND status IN ('requested', 'running')
ORDER BY requested_at LIMIT 1
"""


@dataclass(slots=True)
class Facts:
    target: str | None
    backup: dict[str, Any] | None = None
    drills: list[dict[str, Any]] = field(default_factory=list)
    pitr_drill: dict[str, Any] | None = None
    manifest_size: float | None = None


def supabase_ref(target: str | None) -> str | None:
    if target is None:
        return None
    m = _SUPABASE_TARGET.fullmatch(target)
    return m.group(1) if m else None


def _target(settings: BackupsSettings, given: str | None, backup_target: str | None) -> str | None:
    """The target a plan is about: the one named, else the backup's, else the default."""
    if given is not None:
        if given in settings.target_names or supabase_ref(given) is not None:
            return given
        names = ", ".join(settings.target_names) or "none configured"
        raise invalid(
            f"unknown backup_target; configured targets: {names}; or supabase:<project ref>"
        )
    if backup_target is not None:
        return backup_target
    return settings.default


async def _backup(
    conn: psycopg.AsyncConnection[Any], req: DisasterRecoveryRequest, target: str | None
) -> dict[str, Any] | None:
    """The backup a backup_restore restores (checked); None for the other types."""
    if req.recovery_type != "backup_restore":
        return None
    if req.backup_id is not None:
        b = await record.backup_by_id(conn, uuid.UUID(req.backup_id))
        if b is None:
            raise invalid("no backup with this backup_id")
        if target is not None and b["backup_target"] != target:
            raise invalid(f"backup {b['id']} is a backup of {b['backup_target']}, not of {target}")
        if b["backup_status"] != "completed":
            raise invalid(f"backup {b['id']} is {b['backup_status']}, not completed")
        if b["removed_at"] is not None:
            raise invalid(f"backup {b['id']} was removed (retention) at {rfc3339(b['removed_at'])}")
        method = b["backup_method"]
        if supabase_ref(str(b["backup_target"])) is None and method != record.PG_DUMP:
            # A base backup (pg_basebackup) is restored with its WAL: a point-in-time recovery.
            raise invalid(
                f"backup {b['id']} is a {method} backup, not a pg_dump: recover from it with "
                "recovery_type point_in_time"
            )
        return b
    assert target is not None
    if supabase_ref(target) is None:
        found = await record.newest_completed(conn, target)
    else:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_NEWEST_ANY, (target,))
        found = await cur.fetchone()
    if found is None:
        raise invalid(f"no completed backup of {target} to restore")
    return found


async def read_facts(
    conn: psycopg.AsyncConnection[Any], settings: BackupsSettings, req: DisasterRecoveryRequest
) -> Facts:
    backup_target = None
    if req.backup_id is not None and req.backup_target is None:
        b = await record.backup_by_id(conn, uuid.UUID(req.backup_id))
        backup_target = None if b is None else str(b["backup_target"])
    target = _target(settings, req.backup_target, backup_target)
    if target is None and req.recovery_type != "failover":
        raise invalid(
            "no backup targets configured (backups.targets); name backup_target (supabase:<ref>)"
        )
    facts = Facts(target, await _backup(conn, req, target))
    if target is None or supabase_ref(target) is not None or req.recovery_type == "failover":
        return facts
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_DRILLS, (target, settings.estimates.drill_sample))
    facts.drills = await cur.fetchall()
    if req.recovery_type == "point_in_time":
        await cur.execute(_PITR_DRILL, (target,))
        facts.pitr_drill = await cur.fetchone()
    cur2 = await conn.execute(_MANIFEST_SIZE, (target,))
    size = await cur2.fetchone()
    if size is not None and size[0] is not None and math.isfinite(float(size[0])):
        facts.manifest_size = float(size[0])
    return facts


# --- what Prometheus says ----------------------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def _one(services: Services, promql: str, at: float) -> float | None:
    """The single value of an aggregating instant query, or None (no series, NaN)."""
    samples = await prometheus_call(services, "query", services.prometheus.query(promql, at))
    values = [v for s in samples if (v := finite(s.value)) is not None]
    return values[0] if values else None


async def source_size(
    services: Services, target: str, manifest_size: float | None, now: float
) -> tuple[float | None, str | None]:
    """Today's database size: the worker's `backup_source_size_bytes`, else the newest backup's
    manifest. Prometheus not answering is not fatal here (the manifest serves)."""
    try:
        size = await _one(
            services, f'max(backup_source_size_bytes{{target="{_label(target)}"}})', now
        )
    except ApiError:
        size = None  # counted and logged by prometheus_call
    if size is not None and size > 0:
        return size, "prometheus"
    if manifest_size is not None and manifest_size > 0:
        return manifest_size, "backup_manifest"
    return None, None


@dataclass(frozen=True, slots=True)
class Window:
    earliest: datetime
    latest: datetime
    source: str

    def json(self) -> dict[str, Any]:
        return {
            "earliest": rfc3339(self.earliest),
            "latest": rfc3339(self.latest),
            "source": self.source,
        }


def _at(seconds: float) -> datetime | None:
    """A Prometheus timestamp as a time; None for one no date can hold (a broken exporter)."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _window(earliest: float, latest: float, source: str) -> Window | None:
    start, end = _at(earliest), _at(latest)
    if start is None or end is None or end < start:
        return None
    return Window(start, end, source)


async def pitr_window(services: Services, target: str, now: datetime) -> tuple[Window | None, str]:
    """The point-in-time window of `target`, or None; and a note on how it was found."""
    at = now.timestamp()
    ref = supabase_ref(target)
    if ref is None:
        sel = f'{{target="{_label(target)}"}}'
        earliest = await _one(services, f"max(backup_pitr_earliest_timestamp_seconds{sel})", at)
        latest = await _one(services, f"min(backup_pitr_latest_timestamp_seconds{sel})", at)
        window = None
        if earliest is not None and latest is not None:
            window = _window(earliest, latest, "backup_worker")
        if window is None:
            return None, "the backup worker exports no point-in-time window for it"
        return window, ""
    sel = f'{{project="{_label(ref)}"}}'
    enabled = await _one(services, f"max(supabase_pitr_enabled{sel})", at)
    if enabled == 0:
        return None, "Supabase reports point-in-time recovery off for the project"
    earliest = await _one(services, f"max(supabase_pitr_earliest_timestamp_seconds{sel})", at)
    if earliest is not None and earliest <= at:
        # The earliest physical backup, as the Management API gives it: WAL-G archives
        # continuously from there up to now.
        window = _window(earliest, at, "supabase")
        if window is not None:
            return window, ""
    span = await _one(services, f"max(supabase_pitr_window_seconds{sel})", at)
    if span is None:
        return None, "the Supabase exporter reports no point-in-time window for the project"
    newest = await _one(services, f"max(supabase_backup_last_completed_timestamp_seconds{sel})", at)
    note = ""
    if newest is None or newest > at:
        # Without the newest physical backup's time the window is counted back from now: the
        # narrower (safe) reading.
        newest = at
        note = "the newest Supabase backup's time is unknown: the window is counted back from now"
    window = _window(newest - span, at, "supabase")
    if window is None:
        return None, "the Supabase exporter's point-in-time window is not a span of time"
    return window, note


def check_target_time(when: datetime, window: Window | None, why: str, now: datetime) -> None:
    if window is None:
        raise invalid(f"no point-in-time recovery for this target: {why}")
    span = f"the window is {rfc3339(window.earliest)} to {rfc3339(window.latest)}"
    if when > now:
        raise invalid(f"target_time {rfc3339(when)} is in the future; {span}")
    if when < window.earliest:
        raise invalid(
            f"target_time {rfc3339(when)} is before the earliest recoverable time; {span}"
        )
    if when > window.latest:
        raise invalid(f"target_time {rfc3339(when)} is after the latest recoverable time; {span}")


# --- the plans -------------------------------------------------------------------------------


@dataclass(slots=True)
class Plan:
    steps: list[Step]
    risk: Risk
    rollback: bool
    support: bool
    estimate: Estimate
    window: Window | None = None
    notes: list[str] = field(default_factory=list)


def _failover(settings: BackupsSettings) -> Plan:
    steps = [Step(s.step_name, s.duration, s.dependencies) for s in settings.failover_steps]
    e = Estimate()
    e.explanation.append(
        "failover: the configured steps (backups.failover_steps); a failover is not drilled here."
    )
    return Plan(
        steps,
        "minimal",
        rollback=False,
        support=True,
        estimate=e,
        notes=[
            "Supabase read replicas are promoted by Supabase (support or dashboard); the data "
            "lost is the replica's replication lag at the moment of failure."
        ],
    )


def _backup_age_risk(settings: BackupsSettings, backup: dict[str, Any], now: datetime) -> Risk:
    completed = backup["completed_at"] or backup["started_at"]
    return age_risk(settings, max(0.0, (now - completed).total_seconds()))


async def build_plan(
    services: Services,
    settings: BackupsSettings,
    req: DisasterRecoveryRequest,
    facts: Facts,
    when: datetime | None,
    now: datetime,
) -> Plan:
    est = settings.estimates
    if req.recovery_type == "failover":
        return _failover(settings)
    target = facts.target
    assert target is not None
    window, why = None, ""
    if req.recovery_type == "point_in_time":
        assert when is not None
        window, why = await pitr_window(services, target, now)
        check_target_time(when, window, why, now)
    if supabase_ref(target) is not None:
        e = Estimate(restore_seconds=est.supabase_restore)
        e.explanation.append(
            "Supabase performs the restore; nothing of it is measured here: the default of "
            f"{est.supabase_restore / 60:g} minutes (backups.estimates.supabase_restore)."
        )
        note = "Supabase performs this restore in place; wsinfra never calls a restore endpoint."
        if req.recovery_type == "point_in_time":
            steps = [
                Step(PREPARE, est.prepare),
                Step(SUPABASE_PITR, est.supabase_restore, (PREPARE,)),
                Step(CONFIRM, est.confirm, (SUPABASE_PITR,)),
            ]
            # `why` here: how the window was found when it had to be narrowed.
            return Plan(steps, "none", False, True, e, window, [note, *filter(None, [why])])
        assert facts.backup is not None
        steps = [
            Step(PREPARE, est.prepare),
            Step(SUPABASE_RESTORE, est.supabase_restore, (PREPARE,)),
            Step(CONFIRM, est.confirm, (SUPABASE_RESTORE,)),
        ]
        risk = _backup_age_risk(settings, facts.backup, now)
        return Plan(steps, risk, False, False, e, None, [note])
    size, source = await source_size(services, target, facts.manifest_size, now.timestamp())
    e = restore_estimate(settings, target, facts.drills, size, source)
    assert e.restore_seconds is not None
    if req.recovery_type == "point_in_time":
        add_wal_replay(settings, e, facts.pitr_drill)
        assert e.wal_replay_seconds is not None
        steps = [
            Step(PREPARE, est.prepare),
            Step(PITR_BASE, e.restore_seconds, (PREPARE,)),
            Step(PITR_REPLAY, e.wal_replay_seconds, (PITR_BASE,)),
            Step(SWITCH, est.switch, (PITR_REPLAY,)),
            Step(CONFIRM, est.confirm, (SWITCH,)),
        ]
        return Plan(steps, "none", True, False, e, window)
    assert facts.backup is not None
    steps = [
        Step(PREPARE, est.prepare),
        Step(RESTORE, e.restore_seconds, (PREPARE,)),
        Step(SWITCH, est.switch, (RESTORE,)),
        Step(CONFIRM, est.confirm, (SWITCH,)),
    ]
    return Plan(steps, _backup_age_risk(settings, facts.backup, now), True, False, e)


# --- the routes --------------------------------------------------------------------------------


def _check_request(req: DisasterRecoveryRequest) -> datetime | None:
    """Refusals that need nothing but the request; the target time, parsed."""
    if req.recovery_scope == "files_only":
        raise invalid(
            "wsinfra recovers databases only: recovery_scope files_only has nothing to recover "
            "(use database_only, or full, which is the database)"
        )
    kind = req.recovery_type
    if kind == "point_in_time" and req.target_time is None:
        raise invalid("target_time is required for point_in_time")
    if kind != "point_in_time" and req.target_time is not None:
        raise invalid(f"target_time is for point_in_time, not {kind}")
    if kind != "backup_restore" and req.backup_id is not None:
        raise invalid(f"backup_id is for backup_restore, not {kind}")
    if not req.dry_run and kind != "backup_restore":
        raise invalid(
            "only backup_restore can be executed; point_in_time and failover are planned "
            "here and carried out by a person (docs/disaster-recovery.md)"
        )
    return None if req.target_time is None else parse_time("target_time", req.target_time)


def _check_restore_target(settings: BackupsSettings, req: DisasterRecoveryRequest) -> None:
    """The restore target and its confirmation (after the policy admitted the caller: the
    reasons name configured targets)."""
    names = ", ".join(settings.restore_targets) or "none configured"
    if req.restore_target is not None and req.restore_target not in settings.restore_targets:
        raise invalid(f"unknown restore_target; backups.restore_targets: {names}")
    if req.dry_run:
        return
    if req.restore_target is None:
        raise invalid(
            "restore_target is required when dry_run is false: a non-production restore "
            f"target (backups.restore_targets: {names}); the source is never restored over"
        )
    if req.confirm != req.restore_target:
        raise invalid("confirm must repeat restore_target exactly to execute the restore")


async def _execute(
    services: Services,
    settings: BackupsSettings,
    who: Identity,
    request_id: str,
    req: DisasterRecoveryRequest,
    facts: Facts,
    answer: dict[str, Any],
) -> uuid.UUID:
    """The restore_drills row the worker claims, and its audit row, in one transaction."""
    target, into = facts.target, req.restore_target
    assert target is not None
    assert into is not None
    assert facts.backup is not None
    if supabase_ref(target) is not None:
        raise invalid(
            "Supabase projects are restored in Supabase (dashboard or support); wsinfra executes "
            "restores of its own targets only"
        )
    # newest_completed reads pg_dump rows only; a backup named by id may be Supabase's.
    if facts.backup.get("backup_method", record.PG_DUMP) != record.PG_DUMP:
        raise invalid(f"backup {facts.backup['id']} is not a pg_dump backup wsinfra took")
    if target not in settings.target_names:
        raise invalid(
            f"{target} is not a configured backup target (backups.targets): the backup worker "
            "restores only those"
        )
    if into == target:
        raise invalid("restore_target is the source itself; a restore never writes into it")
    async with services.db.as_caller(who) as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, into))
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_BUSY, (into,))
        busy = await cur.fetchone()
        if busy is not None:
            raise ApiError(
                "backup_conflict",
                f"a restore into {into} is already {busy['status']} (recovery {busy['id']}, "
                f"since {rfc3339(busy['requested_at'])}); wait for it to finish",
            )
        drill_id = await record.request_drill(
            conn,
            target=target,
            drill_type="restore",
            backup_id=facts.backup["id"],
            restore_into=into,
            trigger="api",
            requested_by=who.user_id,
        )
        after = {
            "id": str(drill_id),
            "backup_target": target,
            "backup_id": str(facts.backup["id"]),
            "restore_into": into,
            "status": "requested",
            "trigger": "api",
            "plan": answer["recovery_plan"],
        }
        await writes.append_audit(
            conn, who.audit("dr.restore", TABLE, str(drill_id), None, jsonable(after), request_id)
        )
    return drill_id


async def post_recovery(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = request.app[BACKUPS]
    who = await caller(request)
    no_query(request)
    req = await read_body(request, DisasterRecoveryRequest, services.settings.max_body_bytes)
    when = _check_request(req)
    now = datetime.now(UTC)
    async with services.db.as_caller(who) as conn:
        if not await policy_admits(conn, DRILLS_PROBE):
            raise ApiError("forbidden", FORBIDDEN)
        _check_restore_target(settings, req)
        facts = await read_facts(conn, settings, req)
    plan = await build_plan(services, settings, req, facts, when, now)
    notes = list(plan.notes)
    if req.recovery_scope == "full":
        notes.insert(
            0,
            "recovery_scope full: wsinfra recovers databases only, so full is the database; "
            "configuration comes back from Git and the application from Vercel's deployments.",
        )
    answer: dict[str, Any] = {
        "recovery_id": str(uuid.uuid4()),
        "recovery_plan": plan_json(plan.steps, plan.risk),
        "rollback_available": plan.rollback,
        "contact_support": plan.support,
        "dry_run": req.dry_run,
        "status": "planned",
        "recovery_type": req.recovery_type,
        "recovery_scope": req.recovery_scope,
        "backup_target": facts.target,
        "backup_id": None if facts.backup is None else str(facts.backup["id"]),
        "backup_completed_at": None
        if facts.backup is None
        else timestamp(facts.backup["completed_at"]),
        "target_time": None if when is None else rfc3339(when),
        "restore_target": req.restore_target,
        "pitr_window": None if plan.window is None else plan.window.json(),
        "estimate_basis": plan.estimate.json(),
        "rto_target_seconds": settings.rto_target,
        "notes": notes,
    }
    if req.dry_run:
        notes.append("dry run: nothing was changed.")
        return web.json_response(answer)
    drill_id = await _execute(services, settings, who, request[REQUEST_ID], req, facts, answer)
    answer["recovery_id"] = str(drill_id)
    answer["status"] = "requested"
    notes.append(
        f"executed: the restore step only, into {req.restore_target}, by the backup worker "
        f"(GET /api/infrastructure/disaster-recovery/{drill_id} follows it); pointing the "
        "application at it is a person's decision."
    )
    log.info(
        "disaster-recovery restore requested",
        extra={"recovery_id": str(drill_id), "target": facts.target, "into": req.restore_target},
    )
    return web.json_response(answer, status=202)


_DRILL = """
SELECT id, backup_target, drill_type, status, restore_into, trigger, backup_id, target_time,
       requested_by, requested_at, started_at, verified_at, finished_at, rto_seconds,
       rpo_seconds, restored_bytes, checks, error_message
FROM restore_drills WHERE id = %s
"""


async def get_recovery(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await caller(request)
    no_query(request)
    text = request.match_info["id"]
    if not _UUID_RE.fullmatch(text):
        raise ApiError("not_found", "no recovery with this id (not a UUID)")
    async with services.db.as_caller(who) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_DRILL, (uuid.UUID(text),))
        row = await cur.fetchone()
        if row is None:
            # Row-level security hides rows without saying why: an admin who sees none named
            # no recovery (a dry run's id is never stored); anyone else may not look.
            if await policy_admits(conn, DRILLS_PROBE):
                raise ApiError("not_found", "no recovery with this id (dry runs are not stored)")
            raise ApiError("forbidden", FORBIDDEN)
    out = drill_json(row)
    out["recovery_id"] = out["id"]
    out["verified_at"] = timestamp(row["verified_at"])
    out["requested_by"] = None if row["requested_by"] is None else str(row["requested_by"])
    out["checks"] = row["checks"] if isinstance(row["checks"], list) else []
    return web.json_response(out)
