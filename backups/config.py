"""The backup worker's config: the record, where dumps go, each target's schedule, its drills and
its point-in-time archive, and the non-production servers a disaster-recovery restore may use.

Every connection is a `common.postgres.PgConnection` (password in a file, never in the conninfo).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from common.config import Strict
from common.durations import Duration
from common.postgres import PgConnection

# Names become directory names, label values and restore_drills.restore_into: keep them plain.
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


class Record(PgConnection):
    """wsinfra's own database, where backup_status and restore_drills live."""


class Scratch(PgConnection):
    """A PostgreSQL server where drills may create (and drop) a database: never production."""

    # Databases the drill creates are named <prefix>_<time>_<id>, and only those are dropped.
    database_prefix: Name = "wsinfra_drill"


class Drill(Strict):
    # How often the newest backup is restored and verified (null: only on demand).
    schedule: Duration | None = 86400.0
    # Alerts when no drill passed for this long (RestoreDrillMissing).
    window: Duration = 2 * 86400.0
    # The spec's RTO: "disaster recovery procedures with < 2 minute RTO".
    rto_target: Duration = 120.0
    # "private": a cluster created with initdb for the drill and removed afterwards (the
    # default: nothing shared is touched); or a configured scratch server.
    scratch: Literal["private"] | Scratch = "private"
    # Application smoke queries: each must return at least one row on the restored database.
    smoke_queries: tuple[Annotated[str, Field(min_length=1, max_length=4000)], ...] = ()
    # Rows sampled per table at the dump's snapshot whose checksums the drill compares.
    sample_rows: Annotated[int, Field(ge=0, le=1000)] = 20
    # pg_restore jobs and counting connections. The restore runs on the drill's own server, not
    # production's, and more jobs than cores still overlap one job's I/O with another's CPU
    # (benchmarks/restore_drill.py: 4 jobs on 2 cores restored ~10 % faster than 2).
    jobs: Annotated[int, Field(ge=1, le=32)] = 4
    # A drill that has not finished in this long is failed (and its cluster removed).
    timeout: Duration = 3600.0


class Pitr(Strict):
    """Point-in-time recovery of a self-hosted server whose WAL is archived (archive_command
    copying segments into `archive_dir`, readable here)."""

    archive_dir: Path
    # Base backups (pg_basebackup) taken by the worker, one directory each.
    base_backup_dir: Path
    base_backup_schedule: Duration | None = 86400.0
    # Base backups kept (the oldest one bounds how far back a restore reaches).
    keep_base_backups: Annotated[int, Field(ge=1, le=100)] = 2
    drill_schedule: Duration | None = 86400.0
    drill_window: Duration = 2 * 86400.0
    # The drill writes its marker rows into this table of the source (created if missing).
    marker_table: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "wsinfra_pitr_markers"


class Target(Strict):
    name: Name
    source: PgConnection
    # How often it is dumped; null: only on demand.
    schedule: Duration | None = 86400.0
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    # pg_dump/pg_restore parallel jobs (directory format).
    jobs: Annotated[int, Field(ge=1, le=32)] = 2
    # gzip level of the directory format's files (PostgreSQL 15's pg_dump: gzip only).
    compress: Annotated[int, Field(ge=0, le=9)] = 1
    # A backup not finished in this long is killed and failed.
    timeout: Duration = 3600.0
    # BackupMissing: no completed backup for this long (the schedule plus slack).
    max_age: Duration = 26 * 3600.0
    drill: Drill = Field(default_factory=Drill)
    pitr: Pitr | None = None


class RestoreTarget(PgConnection):
    """A non-production server a disaster-recovery restore may restore into. The restore always
    creates a new database, <database_prefix>_<time>, and refuses one that exists: it never writes
    into a database it did not create, so it cannot overwrite the source it recovers."""

    name: Name
    database_prefix: Name = "wsinfra_restore"


class BackupsConfig(Strict):
    record: Record
    # Dumps go to <location>/<target>/<started>_<id>/ (a local or mounted directory).
    location: Path
    targets: tuple[Target, ...] = ()
    restore_targets: tuple[RestoreTarget, ...] = ()
    # How often the metrics are read from the record, and how long the last read is served
    # when the record cannot be read.
    refresh_interval: Duration = 15.0
    stale_after: Duration = 300.0
    # How often requests made through the operator API are looked for.
    poll_interval: Duration = 2.0
    # A demo stack says so on its landing page and in its logs.
    demo: bool = False

    @model_validator(mode="after")
    def _names(self) -> BackupsConfig:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("targets: two targets with the same name")
        restore = [r.name for r in self.restore_targets]
        if len(set(restore)) != len(restore):
            raise ValueError("restore_targets: two restore targets with the same name")
        return self

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    def restore_target(self, name: str) -> RestoreTarget | None:
        return next((r for r in self.restore_targets if r.name == name), None)
