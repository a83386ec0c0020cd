"""Command line.

python -m backups --config.file backups.yaml [--web.listen-address :9707]
    the worker: schedules, requests from the operator API, retention, /metrics
python -m backups backup --config.file backups.yaml --target NAME
python -m backups drill --config.file backups.yaml --target NAME [--backup-id UUID]
python -m backups pitr-drill --config.file backups.yaml --target NAME
    one job now, recorded like a scheduled one; prints the outcome as JSON;
    exit 0 when it succeeded, 1 when it failed, 2 for a bad config or target
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from backups.app import BackupExporter, make_app
from backups.config import BackupsConfig, Target
from backups.worker import RecordUnavailable, Worker
from common.cli import exporter_main, load_for_cli
from common.logging import configure
from schema import backups as record

log = logging.getLogger("backups")
DEFAULT_PORT = 9707
JOBS = ("backup", "drill", "pitr-drill")


def summary(cfg: BackupsConfig, _: None) -> str:
    names = ", ".join(t.name for t in cfg.targets) or "none"
    demo = "DEMO; " if cfg.demo else ""
    return f"{demo}targets: {names}; location {cfg.location}"


def main(argv: list[str] | None = None) -> int:
    # Dumps, manifests and base backups readable by this user only: a manifest names roles, row
    # counts and sampled keys, and the dump is the data itself.
    os.umask(0o077)
    args = sys.argv[1:] if argv is None else argv
    if args[:1] and args[0] in JOBS:
        return job_main(args[0], args[1:])
    return exporter_main(
        args,
        prog="python -m backups",
        description=__doc__,
        default_port=DEFAULT_PORT,
        model=BackupsConfig,
        prepare=lambda cfg, _: None,
        summary=summary,
        make_app=lambda cfg, _: make_app(BackupExporter(cfg)),
        log=log,
    )


def job_main(kind: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m backups {kind}")
    parser.add_argument("--config.file", dest="config", type=Path, required=True)
    parser.add_argument("--target", required=True)
    if kind == "drill":
        parser.add_argument("--backup-id", type=uuid.UUID, default=None)
    parser.add_argument("--log.level", dest="log_level", default="warning")
    args = parser.parse_args(argv)
    configure(args.log_level, "logfmt")
    loaded = load_for_cli(args.config, BackupsConfig, lambda cfg, _: None)
    if loaded is None:
        return 2
    cfg, _ = loaded
    target = cfg.target(args.target)
    if target is None:
        known = ", ".join(t.name for t in cfg.targets) or "none"
        print(
            f"error: no target named {args.target!r} in {args.config} (known: {known})",
            file=sys.stderr,
        )
        return 2
    if kind == "pitr-drill" and target.pitr is None:
        print(f"error: target {target.name} has no pitr section in {args.config}", file=sys.stderr)
        return 2
    backup_id = getattr(args, "backup_id", None)
    try:
        if backup_id is not None:
            why = asyncio.run(_unusable(Worker(cfg), target, backup_id))
            if why is not None:
                print(f"error: backup {backup_id}: {why}", file=sys.stderr)
                return 2
        ok, out = asyncio.run(_job(kind, Worker(cfg), target, backup_id))
    except RecordUnavailable as exc:
        print(f"error: the record database is unavailable ({exc})", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=1, default=str))
    return 0 if ok else 1


async def _unusable(worker: Worker, target: Target, backup_id: uuid.UUID) -> str | None:
    """Why the backup cannot be drilled for `target` (None: it can): checked before any drill is
    recorded, so a mistyped id is an error, not a failed drill that alerts."""
    row = await worker._record("read", lambda c: record.backup_by_id(c, backup_id))
    if row is None:
        return "no such backup"
    if row["backup_target"] != target.name or row["backup_method"] != record.PG_DUMP:
        return f"not a dump of {target.name} ({row['backup_method']} of {row['backup_target']})"
    if row["backup_status"] != "completed" or row["removed_at"] is not None:
        return "not a completed backup whose files are kept"
    if not row["manifest"]:
        return "no manifest to verify against"
    return None


async def _job(
    kind: str, worker: Worker, target: Target, backup_id: uuid.UUID | None
) -> tuple[bool, dict[str, Any]]:
    if kind == "backup":
        job = await worker.backup_now(target)
        ok = await worker.backup(job)
        row = await worker._record("read", lambda c: record.backup_by_id(c, job.id))
        row = dict(row or {})
        row.pop("manifest", None)
        return ok, row
    drill_type = "point_in_time" if kind == "pitr-drill" else "restore"
    if drill_type == "point_in_time":
        await _ensure_base_backup(worker, target)
    djob = await worker.drill_now(target, drill_type)
    if backup_id is not None:
        await worker._record("write", lambda c: record.set_drill_backup(c, djob.id, backup_id))
        djob = record.DrillJob(
            djob.id, djob.drill_type, djob.target, backup_id, djob.restore_into, None, "cli"
        )
    outcome = await worker.drill(djob)
    return outcome.passed, {
        "drill_id": str(djob.id),
        "passed": outcome.passed,
        "rto_seconds": outcome.rto_seconds,
        "rpo_seconds": outcome.rpo_seconds,
        "restored_bytes": outcome.restored_bytes,
        "error": outcome.error,
        "checks": outcome.checks,
    }


async def _ensure_base_backup(worker: Worker, target: Target) -> None:
    from backups import pitr

    assert target.pitr is not None
    if not pitr.base_backups(target.pitr):
        await worker.base_backup(target)
