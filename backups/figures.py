"""The `backup_` metrics: read from the record (backup_status, restore_drills) on a refresh loop
into an immutable snapshot, rendered by a pure collector.

The record holds Supabase's mirrored backups too, so one set of metrics covers every backup;
labels are the target (a configured name or supabase:<ref>) and the method.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from backups.config import BackupsConfig
from backups.pitr import window

_BACKUPS = """
SELECT backup_target, backup_method,
    extract(epoch FROM max(completed_at) FILTER (WHERE backup_status = 'completed')),
    extract(epoch FROM max(started_at) FILTER (WHERE backup_status = 'failed')),
    extract(epoch FROM min(completed_at) FILTER (WHERE backup_status = 'completed'
                                                 AND removed_at IS NULL)),
    count(*) FILTER (WHERE backup_status = 'in_progress' AND removed_at IS NULL),
    count(*) FILTER (WHERE backup_status = 'completed' AND removed_at IS NULL),
    count(*) FILTER (WHERE backup_status = 'failed' AND removed_at IS NULL),
    count(*) FILTER (WHERE removed_at IS NOT NULL),
    count(*) FILTER (WHERE started_at > now() - interval '30 days' AND backup_status = 'completed'),
    count(*) FILTER (WHERE started_at > now() - interval '30 days'
                     AND backup_status IN ('completed', 'failed'))
FROM backup_status
GROUP BY 1, 2
"""

# The newest two completed backups per target and method: sizes to compare, the newest's expiry.
_NEWEST = """
SELECT backup_target, backup_method, n, backup_size_bytes, duration_seconds,
       extract(epoch FROM expires_at)
FROM (
    SELECT backup_target, backup_method, backup_size_bytes, duration_seconds, expires_at,
           row_number() OVER (PARTITION BY backup_target, backup_method
                              ORDER BY completed_at DESC) AS n
    FROM backup_status WHERE backup_status = 'completed'
) t WHERE n <= 2
"""

_DRILLS = """
SELECT backup_target, drill_type,
    (SELECT status FROM restore_drills l WHERE l.backup_target = d.backup_target
        AND l.drill_type = d.drill_type AND l.status IN ('passed', 'failed')
        ORDER BY finished_at DESC LIMIT 1),
    extract(epoch FROM max(finished_at) FILTER (WHERE status IN ('passed', 'failed'))),
    extract(epoch FROM max(finished_at) FILTER (WHERE status = 'passed'))
FROM restore_drills d GROUP BY 1, 2
"""

_LAST_PASSED = """
SELECT DISTINCT ON (backup_target, drill_type) backup_target, drill_type, rto_seconds,
       rpo_seconds, restored_bytes
FROM restore_drills WHERE status = 'passed'
ORDER BY backup_target, drill_type, finished_at DESC
"""


@dataclass(frozen=True, slots=True)
class BackupFigures:
    target: str
    method: str
    last_completed: float | None
    last_failed: float | None
    oldest_retained: float | None
    counts: tuple[tuple[str, int], ...]
    success_ratio: float | None
    last_size: float | None = None
    previous_size: float | None = None
    last_duration: float | None = None
    last_expiry: float | None = None


@dataclass(frozen=True, slots=True)
class DrillFigures:
    target: str
    drill_type: str
    last_passed: bool | None
    last_finished: float | None
    last_success: float | None
    rto: float | None = None
    rpo: float | None = None
    restored_bytes: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    backups: tuple[BackupFigures, ...] = ()
    drills: tuple[DrillFigures, ...] = ()
    source_sizes: tuple[tuple[str, float], ...] = ()
    pitr_windows: tuple[tuple[str, float, float], ...] = ()


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


async def read(
    conn: psycopg.AsyncConnection[Any],
) -> tuple[tuple[BackupFigures, ...], tuple[DrillFigures, ...]]:
    cur = await conn.execute(_NEWEST)
    newest: dict[tuple[str, str], dict[int, tuple[Any, Any, Any]]] = {}
    for target, method, n, size, duration, expiry in await cur.fetchall():
        newest.setdefault((target, method), {})[int(n)] = (size, duration, expiry)
    cur = await conn.execute(_BACKUPS)
    backups = []
    for row in await cur.fetchall():
        target, method, done, failed, oldest, prog, comp, fail, removed, ok30, all30 = row
        top = newest.get((target, method), {})
        last, prev = top.get(1), top.get(2)
        backups.append(
            BackupFigures(
                target,
                method,
                _f(done),
                _f(failed),
                _f(oldest),
                (
                    ("completed", comp),
                    ("failed", fail),
                    ("in_progress", prog),
                    ("removed", removed),
                ),
                (ok30 / all30) if all30 else None,
                _f(last[0]) if last else None,
                _f(prev[0]) if prev else None,
                _f(last[1]) if last else None,
                _f(last[2]) if last else None,
            )
        )
    cur = await conn.execute(_LAST_PASSED)
    passed = {(t, d): (rto, rpo, size) for t, d, rto, rpo, size in await cur.fetchall()}
    cur = await conn.execute(_DRILLS)
    drills = []
    for target, dtype, status, finished, success in await cur.fetchall():
        rto, rpo, size = passed.get((target, dtype), (None, None, None))
        drills.append(
            DrillFigures(
                target,
                dtype,
                None if status is None else status == "passed",
                _f(finished),
                _f(success),
                _f(rto),
                _f(rpo),
                _f(size),
            )
        )
    return tuple(sorted(backups, key=lambda b: (b.target, b.method))), tuple(
        sorted(drills, key=lambda d: (d.target, d.drill_type))
    )


def pitr_windows(cfg: BackupsConfig) -> tuple[tuple[str, float, float], ...]:
    out = []
    for t in cfg.targets:
        if t.pitr is not None:
            w = window(t.pitr)
            if w is not None:
                out.append((t.name, w[0], w[1]))
    return tuple(out)


@dataclass
class JobStats:
    """The worker's own counters (changed on the event loop, copied into each scrape)."""

    running: dict[str, int] = field(default_factory=dict)
    finished: dict[tuple[str, str], int] = field(default_factory=dict)
    record_errors: dict[str, int] = field(default_factory=dict)

    def copy(self) -> JobStats:
        return JobStats(dict(self.running), dict(self.finished), dict(self.record_errors))


KINDS = ("backup", "drill", "pitr_base_backup", "pitr_drill", "retention")


def collect(cfg: BackupsConfig, snap: Snapshot | None, jobs: JobStats) -> Iterable[Metric]:
    """Pure: the config's expectations, the record's figures (when any were read) and the jobs."""
    g = GaugeMetricFamily
    configured = g(
        "backup_target_configured", "1 for each target the worker backs up.", labels=["target"]
    )
    max_age = g(
        "backup_max_age_seconds",
        "Age after which a missing backup of the target alerts.",
        labels=["target"],
    )
    rto_target = g(
        "backup_drill_rto_target_seconds",
        "The target's RTO objective for a restore.",
        labels=["target"],
    )
    drill_window = g(
        "backup_drill_window_seconds",
        "How long the target may go without a passed drill of this type.",
        labels=["target", "type"],
    )
    for t in cfg.targets:
        configured.add_metric([t.name], 1)
        max_age.add_metric([t.name], t.max_age)
        rto_target.add_metric([t.name], t.drill.rto_target)
        if t.drill.schedule is not None:
            drill_window.add_metric([t.name, "restore"], t.drill.window)
        if t.pitr is not None and t.pitr.drill_schedule is not None:
            drill_window.add_metric([t.name, "point_in_time"], t.pitr.drill_window)
    yield from (configured, max_age, rto_target, drill_window)

    running = g("backup_jobs_running", "Jobs running now, by kind.", labels=["kind"])
    for kind in KINDS:
        running.add_metric([kind], jobs.running.get(kind, 0))
    finished = CounterMetricFamily(
        "backup_jobs", "Jobs finished, by kind and result.", labels=["kind", "result"]
    )
    for kind in KINDS:
        for result in ("ok", "failed"):
            finished.add_metric([kind, result], jobs.finished.get((kind, result), 0))
    errors = CounterMetricFamily(
        "backup_record_errors",
        "Reads or writes of the record (backup_status, restore_drills) that failed.",
        labels=["operation"],
    )
    for op in ("read", "write"):
        errors.add_metric([op], jobs.record_errors.get(op, 0))
    yield from (running, finished, errors)

    if snap is None:
        return
    bl = ["target", "method"]
    last_ok = g(
        "backup_last_completed_timestamp_seconds",
        "Newest completed backup (from the record, cached).",
        labels=bl,
    )
    last_bad = g(
        "backup_last_failed_timestamp_seconds",
        "Newest failed backup (from the record, cached).",
        labels=bl,
    )
    size = g("backup_last_size_bytes", "Size of the newest completed backup (cached).", labels=bl)
    prev = g(
        "backup_previous_size_bytes",
        "Size of the completed backup before the newest (cached).",
        labels=bl,
    )
    dur = g(
        "backup_last_duration_seconds",
        "How long the newest completed backup took (cached).",
        labels=bl,
    )
    expiry = g(
        "backup_last_completed_expiry_timestamp_seconds",
        "When the newest completed backup expires (cached).",
        labels=bl,
    )
    oldest = g(
        "backup_oldest_retained_timestamp_seconds",
        "The oldest completed backup not yet removed (cached).",
        labels=bl,
    )
    counts = g(
        "backup_backups", "Backups in the record by status (cached).", labels=[*bl, "status"]
    )
    ratio = g(
        "backup_success_ratio",
        "Completed / (completed + failed) among backups started in the last 30 days (cached).",
        labels=bl,
    )
    for b in snap.backups:
        lv = [b.target, b.method]
        for fam, v in (
            (last_ok, b.last_completed),
            (last_bad, b.last_failed),
            (size, b.last_size),
            (prev, b.previous_size),
            (dur, b.last_duration),
            (expiry, b.last_expiry),
            (oldest, b.oldest_retained),
            (ratio, b.success_ratio),
        ):
            if v is not None:
                fam.add_metric(lv, v)
        for status, n in b.counts:
            counts.add_metric([*lv, status], n)
    yield from (last_ok, last_bad, size, prev, dur, expiry, oldest, counts, ratio)

    dl = ["target", "type"]
    d_last = g(
        "backup_drill_last_timestamp_seconds",
        "When the newest finished drill finished (cached).",
        labels=dl,
    )
    d_passed = g(
        "backup_drill_last_passed",
        "1 if the newest finished drill passed, 0 if it failed (cached).",
        labels=dl,
    )
    d_ok = g(
        "backup_drill_last_success_timestamp_seconds",
        "When the newest passed drill finished (cached).",
        labels=dl,
    )
    d_rto = g(
        "backup_drill_rto_seconds",
        "Measured RTO of the newest passed drill: start to verified (cached).",
        labels=dl,
    )
    d_rpo = g(
        "backup_drill_rpo_seconds",
        "Measured RPO of the newest passed drill: the restored data's age when it started (cached).",
        labels=dl,
    )
    d_bytes = g(
        "backup_drill_restored_bytes",
        "Database size restored by the newest passed drill (cached).",
        labels=dl,
    )
    for d in snap.drills:
        lv = [d.target, d.drill_type]
        if d.last_passed is not None:
            d_passed.add_metric(lv, 1.0 if d.last_passed else 0.0)
        for fam, v in (
            (d_last, d.last_finished),
            (d_ok, d.last_success),
            (d_rto, d.rto),
            (d_rpo, d.rpo),
            (d_bytes, d.restored_bytes),
        ):
            if v is not None:
                fam.add_metric(lv, v)
    yield from (d_last, d_passed, d_ok, d_rto, d_rpo, d_bytes)

    src = g(
        "backup_source_size_bytes",
        "The source database's size (cached, read every few minutes).",
        labels=["target"],
    )
    for name, v in snap.source_sizes:
        src.add_metric([name], v)
    early = g(
        "backup_pitr_earliest_timestamp_seconds",
        "Point-in-time targets: the oldest base backup's start (how far back a restore reaches;"
        " cached, read every 5 minutes).",
        labels=["target"],
    )
    late = g(
        "backup_pitr_latest_timestamp_seconds",
        "Point-in-time targets: the newest archived WAL segment's time (how recent a restore can"
        " be; cached, read every 5 minutes).",
        labels=["target"],
    )
    for name, a, b2 in snap.pitr_windows:
        early.add_metric([name], a)
        late.add_metric([name], b2)
    yield from (src, early, late)
