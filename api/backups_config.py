"""The `backups:` section of the API's config: the targets POST /backups may ask a dump of (the
backup worker's targets, by the same names), the retention policy, the non-production restore
targets a disaster-recovery restore may write into, and the figures the recovery plan uses where
nothing was measured (api/backups.py, api/disaster_recovery.py; docs/operator-api.md, "Backups"
and "Disaster recovery").

The whole section is optional: without targets POST /backups answers 422 "no backup targets
configured", and GET /backups still lists what the record holds (the Supabase mirror's rows).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from common.config import Strict
from common.durations import Duration

# A target or restore target name, as the backup worker's config allows them (backups/config.py):
# a Prometheus label value (`target`) and a directory name, so nothing that could change a PromQL
# selector or a path. `supabase:<ref>` is the mirror's, never a configured target.
TargetName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
Days = Annotated[int, Field(ge=1, le=3650)]
# A backup location as the worker writes it: a directory (or a mounted bucket's path).
Location = Annotated[str, StringConstraints(min_length=1, max_length=400, pattern=r"^\S+$")]
StepName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"\S")]


class BackupTarget(Strict):
    # The name the backup worker uses for this database (backups/ config): the rows' and the
    # metrics' `target`.
    name: TargetName
    # Where its dumps go; default <backups.location>/<name>/.
    location: Location | None = None


class RetentionPolicy(Strict):
    """BackupsListResponse.retention_policy, and the default retention of a requested backup
    (the spec's default retention is 30 days)."""

    database_retention_days: Days = 30
    files_retention_days: Days = 30
    configuration_retention_days: Days = 30


class DataLossRisk(Strict):
    """A backup restore's data-loss risk from the age of the backup restored: up to
    `none_within` old 'none', up to `minimal_within` 'minimal', up to `moderate_within`
    'moderate', older 'significant'."""

    none_within: Duration = 60.0
    minimal_within: Duration = 3600.0
    moderate_within: Duration = 86400.0

    @model_validator(mode="after")
    def _ordered(self) -> DataLossRisk:
        if not self.none_within <= self.minimal_within <= self.moderate_within:
            raise ValueError("must be ordered: none_within <= minimal_within <= moderate_within")
        return self


class Estimates(Strict):
    """What the plans use where nothing was measured (the answer's estimate_basis says so), and
    the steps a person does by hand. Conservative on purpose: an estimate that is too short at
    3 a.m. is worse than one too long."""

    # POST /backups of a target without any completed dump yet.
    backup: Duration = 600.0
    # Restore throughput (bytes per second, restore and verification) when no restore drill of
    # the target passed: a slow disk's pg_restore with index builds.
    restore_bytes_per_second: Annotated[float, Field(gt=0)] = 5e6
    # The whole restore when neither a drill nor the database's size is known.
    restore: Duration = 3600.0
    # WAL replay of a point-in-time recovery when no point-in-time drill of the target passed.
    wal_replay: Duration = 1800.0
    # By hand: declare the incident and stop writes; point the application at the restored
    # database; confirm the recovery (error rates, alerts, smoke queries).
    prepare: Duration = 300.0
    switch: Duration = 300.0
    confirm: Duration = 300.0
    # A restore Supabase performs (dashboard or support): nothing of it is measured here.
    supabase_restore: Duration = 3600.0
    # How many of the newest passed restore drills the throughput is the median of.
    drill_sample: Annotated[int, Field(ge=1, le=100)] = 5


class FailoverStep(Strict):
    step_name: StepName
    duration: Duration
    # Names of earlier steps this one waits for.
    dependencies: tuple[StepName, ...] = ()


# Supabase's read replica in another region promoted (Supabase support does it today), then
# the application pointed at it: the spec's 2-minute failover target, step by step.
_CONFIRM_LOST = "Confirm the primary is lost and declare the incident"
_PROMOTE = "Promote the read replica in the standby region"
DEFAULT_FAILOVER_STEPS = tuple(
    FailoverStep.model_validate(step)
    for step in (
        {"step_name": _CONFIRM_LOST, "duration": "30s"},
        {"step_name": _PROMOTE, "duration": "1m", "dependencies": [_CONFIRM_LOST]},
        {
            "step_name": "Point the application at the promoted database",
            "duration": "30s",
            "dependencies": [_PROMOTE],
        },
    )
)


class BackupsSettings(Strict):
    # The databases the backup worker backs up (its own targets, by name).
    targets: tuple[BackupTarget, ...] = ()
    # The target of a request that names none; default: the first.
    default_target: TargetName | None = None
    # The base of every target's location without one of its own.
    location: Location | None = None
    retention_policy: RetentionPolicy = Field(default_factory=RetentionPolicy)
    # Non-production databases (by the worker's names) a disaster-recovery restore may write
    # into; never a target itself.
    restore_targets: tuple[TargetName, ...] = ()
    data_loss_risk: DataLossRisk = Field(default_factory=DataLossRisk)
    estimates: Estimates = Field(default_factory=Estimates)
    failover_steps: Annotated[tuple[FailoverStep, ...], Field(min_length=1)] = (
        DEFAULT_FAILOVER_STEPS
    )
    # The spec's failover RTO (2 minutes); plans say it beside their estimate.
    rto_target: Duration = 120.0

    @model_validator(mode="after")
    def _check(self) -> BackupsSettings:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("targets: a name is listed twice")
        if len(set(self.restore_targets)) != len(self.restore_targets):
            raise ValueError("restore_targets: a name is listed twice")
        both = sorted(set(names) & set(self.restore_targets))
        if both:
            raise ValueError(
                f"restore_targets: {', '.join(both)} is also a backup target (a restore never "
                "writes into a source)"
            )
        if self.default_target is not None and self.default_target not in names:
            raise ValueError(f"default_target: {self.default_target!r} is not one of targets")
        missing = [t.name for t in self.targets if t.location is None and self.location is None]
        if missing:
            raise ValueError(
                f"targets: {', '.join(missing)} has no location (give it one, or backups.location)"
            )
        seen: set[str] = set()
        for i, step in enumerate(self.failover_steps):
            unknown = [d for d in step.dependencies if d not in seen]
            if unknown:
                raise ValueError(
                    f"failover_steps[{i}].dependencies: {', '.join(unknown)} is not an earlier step"
                )
            if step.step_name in seen:
                raise ValueError(f"failover_steps[{i}].step_name: listed twice")
            seen.add(step.step_name)
        return self

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets)

    @property
    def default(self) -> str | None:
        if self.default_target is not None:
            return self.default_target
        return self.targets[0].name if self.targets else None

    def location_of(self, name: str) -> str:
        """Where `name`'s dumps go (a configured target)."""
        target = next(t for t in self.targets if t.name == name)
        if target.location is not None:
            return target.location
        assert self.location is not None  # checked when loaded
        return f"{self.location.rstrip('/')}/{name}/"
