"""The Supabase exporter's config: the databases its SQL collectors read, the Management API,
Supabase's metrics endpoint and the record its backups are mirrored into, strictly checked."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from common.config import SecretFile, Strict
from common.durations import Duration, parse_duration
from common.postgres import Conninfo, PgConnection

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def _interval(value: object) -> float:
    """A duration, or "0s": read on every scrape."""
    return 0.0 if value in ("0", "0s") else parse_duration(value)


# Seconds between reads; 0 reads on every scrape.
Interval = Annotated[float, BeforeValidator(_interval)]


class MissingIndex(Strict):
    # A table is a missing-index suspect when it is this large, scanned sequentially this often,
    # and sequentially more than `ratio` times as often as by index.
    min_rows: Annotated[int, Field(ge=0)] = 10_000
    min_seq_scans: Annotated[int, Field(ge=0)] = 50
    ratio: Annotated[float, Field(gt=0)] = 10.0
    max_tables: Annotated[int, Field(ge=1, le=100)] = 10


class Cadence(Strict):
    """How often one collector reads the database. Scrapes between two reads serve the rows of
    its last good read (supabase_sql_collector_cached says so); rows older than `stale_after`
    are dropped. Unset keys take the collector's default (DEFAULT_CADENCE)."""

    # "0s": on every scrape. A read is due at the scrape nearest the interval (with 15s scrapes,
    # 60s reads on every fourth scrape).
    interval: Interval | None = None
    # Default: five intervals.
    stale_after: Duration | None = None


class Database(Strict):
    # The `project` label (a Supabase project ref, or a name for any PostgreSQL).
    name: str
    # libpq conninfo without a password ("host=… port=… dbname=… user=…"); a read-only role
    # with pg_monitor is enough (and pg_read_all_stats for other users' statements).
    conninfo: Conninfo
    # Read at every new connection (common.postgres), so a rotated password needs no restart.
    password_file: SecretFile | None = None
    # Every collector query runs under this timeout; the whole scrape under `scrape_budget`.
    statement_timeout: Duration = 2.0
    scrape_budget: Duration = 8.0
    # Connections this exporter may hold to the database at once.
    max_connections: Annotated[int, Field(ge=1, le=10)] = 2
    # pg_stat_statements: this many statements by mean time and by total time get their own
    # series; the rest are summed as queryid "other".
    top_statements: Annotated[int, Field(ge=1, le=100)] = 10
    statement_text_max: Annotated[int, Field(ge=40, le=2000)] = 300
    missing_index: MissingIndex = Field(default_factory=MissingIndex)
    # The disk the database may use (a Supabase plan's disk size): growth alerts predict against it.
    size_limit_bytes: Annotated[int, Field(gt=0)] | None = None
    # Transactions open longer than this are "long".
    long_transaction: Duration = 60.0
    # Collectors not to run here (e.g. "statements" where pg_stat_statements is not loaded).
    disabled_collectors: list[str] = Field(default_factory=list)
    # How often each collector reads the database, for those not read on every scrape (the
    # costly ones: DEFAULT_CADENCE); e.g. {statements: {interval: 30s, stale_after: 3m}}.
    cadence: dict[str, Cadence] = Field(default_factory=dict)
    # Counts active users for cost per user. The default reads Supabase's auth.users; set your
    # own query returning one row (day, month) where users live elsewhere.
    active_users_query: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"{value!r} must match {_NAME.pattern}")
        return value

    @field_validator("disabled_collectors")
    @classmethod
    def _collectors(cls, value: list[str]) -> list[str]:
        _known(value)
        return value

    @field_validator("cadence")
    @classmethod
    def _cadence(cls, value: dict[str, Cadence]) -> dict[str, Cadence]:
        _known(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> Database:
        if self.statement_timeout >= self.scrape_budget:
            raise ValueError("statement_timeout must be shorter than scrape_budget")
        for name in COLLECTOR_NAMES:
            interval, stale_after = self.interval(name), self.stale_after(name)
            if interval and stale_after <= interval:
                raise ValueError(
                    f"cadence.{name}: stale_after ({stale_after:g}s) must be longer than"
                    f" interval ({interval:g}s)"
                )
        return self

    def interval(self, collector: str) -> float:
        """Seconds between the collector's reads (0: every scrape)."""
        own = self.cadence.get(collector)
        if own is not None and own.interval is not None:
            return own.interval
        return DEFAULT_CADENCE.get(collector, 0.0)

    def stale_after(self, collector: str) -> float:
        """Age past which the collector's last good rows are no longer served."""
        own = self.cadence.get(collector)
        if own is not None and own.stale_after is not None:
            return own.stale_after
        return 5 * self.interval(collector)

    def connection(self) -> PgConnection:
        """These keys as the shared Postgres settings (common.postgres): no idle connection is
        kept open between scrapes, at most `max_connections`, and a scrape waits for one at
        most its whole budget. The keys stay this model's own, so existing configs load."""
        # Every field is validated here already (Duration accepts only strings, not floats).
        return PgConnection.model_construct(
            conninfo=self.conninfo,
            password_file=self.password_file,
            statement_timeout=self.statement_timeout,
            pool_min=0,
            pool_max=self.max_connections,
            acquire_timeout=self.scrape_budget,
        )


# The SQL collectors (exporters/supabase/sql.py implements one per name, in this order).
COLLECTOR_NAMES = (
    "connections",
    "activity",
    "database",
    "database_size",
    "wraparound",
    "replication",
    "tables",
    "statements",
    "active_users",
)
# Seconds between reads of the collectors not read on every scrape: what costs the database
# most per read (measured with 1,000 tables, 5,000 statements, 20,000 users; see
# docs/exporters/supabase.md): pg_stat_statements ~10 ms, pg_database_size ~8 ms (a stat()
# of every file), auth.users ~6 ms (a full scan: far more on a big project), per-table
# statistics ~1.2 ms. Everything else costs under 0.2 ms and is read on every scrape.
DEFAULT_CADENCE: dict[str, float] = {
    "database_size": 60.0,
    "tables": 60.0,
    "statements": 60.0,
    "active_users": 300.0,
}


def _known(names: Iterable[str]) -> None:
    unknown = sorted(set(names) - set(COLLECTOR_NAMES))
    if unknown:
        raise ValueError(f"unknown collectors {unknown}; known: {', '.join(COLLECTOR_NAMES)}")


# Days of daily backups each plan keeps: "Pro Plan projects can access the last 7 days of daily
# backups. Team Plan projects can access the last 14 days of daily backups, while Enterprise Plan
# projects can access up to 30 days" (https://supabase.com/docs/guides/platform/backups); the
# Free Plan's backups cannot be accessed (the API lists none), so none is retained for us.
PLAN_RETENTION_DAYS: dict[str, int] = {"free": 0, "pro": 7, "team": 14, "enterprise": 30}
Plan = Literal["free", "pro", "team", "enterprise"]
RetentionDays = Annotated[int, Field(ge=0, le=3650)]

SERVICES = ("auth", "db", "db_postgres_user", "pg_bouncer", "pooler", "realtime", "rest", "storage")
_REF = re.compile(r"[a-z0-9]{1,40}")


class ManagedProject(Strict):
    ref: str
    # The backup alerts: a project whose plan includes PITR must have it on.
    pitr_required: bool = False
    # The mirror (`record:`): the project's plan gives its backups' retention
    # (PLAN_RETENTION_DAYS) unless backup_retention_days says otherwise; unset, record's own.
    plan: Plan | None = None
    backup_retention_days: RetentionDays | None = None

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        if not _REF.fullmatch(value):
            raise ValueError(f"{value!r} is not a Supabase project ref")
        return value


class Management(Strict):
    """Supabase's Management API: backups, PITR and service health, polled in the background."""

    base_url: str = "https://api.supabase.com"
    # A personal access token (sbp_…) or OAuth token; read at start-up and again whenever the
    # file changes (a rotated token needs no restart), never logged.
    token_file: SecretFile
    # Backups change daily and health by the minute; the API allows 120 requests a minute per
    # endpoint and project, so every minute costs little.
    refresh_interval: Duration = 60.0
    timeout: Duration = 10.0
    # Served data older than this is dropped, and supabase_management_up is 0.
    stale_after: Duration = 600.0
    # Find the token's projects with GET /v1/projects on every refresh (paused ones skipped), so
    # a new project appears without a restart. Listed projects are always watched.
    discover: bool = True
    projects: list[ManagedProject] = Field(default_factory=list)
    services: list[str] = Field(
        default_factory=lambda: ["auth", "db", "realtime", "rest", "storage"]
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s@]+", value):
            raise ValueError(f"{value!r} must be an http(s) URL without credentials")
        return value.rstrip("/")

    @field_validator("services")
    @classmethod
    def _services(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SERVICES))
        if unknown:
            raise ValueError(f"unknown services {unknown}; known: {', '.join(SERVICES)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> Management:
        if self.timeout >= self.refresh_interval:
            raise ValueError("timeout must be shorter than refresh_interval")
        if self.stale_after <= self.refresh_interval:
            raise ValueError("stale_after must be longer than refresh_interval")
        if not self.discover and not self.projects:
            raise ValueError("list projects, or set discover: true")
        return self


class ProjectMetrics(Strict):
    """Supabase's per-project metrics endpoint, re-exposed by the exporter (GET /probe)."""

    url_template: str = "https://{ref}.supabase.co/customer/v1/privileged/metrics"
    # One file per project ref, holding that project's secret (service_role) key.
    keys_dir: Path
    # Always offered to Prometheus (GET /sd); discovered projects with a key file join them.
    projects: list[str] = Field(default_factory=list)
    timeout: Duration = 10.0

    @field_validator("url_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{ref}" not in value or not re.match(r"^https?://[^/\s@]+", value.replace("{ref}", "x")):
            raise ValueError("must be an http(s) URL containing {ref}, without credentials")
        return value

    @field_validator("projects")
    @classmethod
    def _refs(cls, value: list[str]) -> list[str]:
        bad = [r for r in value if not _REF.fullmatch(r)]
        if bad:
            raise ValueError(f"not Supabase project refs: {bad}")
        return value


class Record(PgConnection):
    """wsinfra's own database (the recorder's), where every backup the Management API lists is
    mirrored into the spec's backup_status, one row per backup (`supabase:<ref>:<id>`), updated
    in place as its status moves. The keys of the billing exporter's `cost_tracking`: a
    conninfo without the password, `password_file` read at each connection (a rotated password
    needs no restart), `statement_timeout` (10s) and `acquire_timeout` (5s, also the connect
    timeout); each write is one short connection."""

    # The retention of projects that set neither `plan` nor `backup_retention_days` under
    # management.projects (and of discovered ones): backup_retention_days if set, else the plan's.
    plan: Plan = "pro"
    backup_retention_days: RetentionDays | None = None

    def retention_days(self, project: ManagedProject | None) -> int:
        """Days a backup of this project is kept (backup_status.backup_retention_days)."""
        if project is not None and project.backup_retention_days is not None:
            return project.backup_retention_days
        if project is not None and project.plan is not None:
            return PLAN_RETENTION_DAYS[project.plan]
        if self.backup_retention_days is not None:
            return self.backup_retention_days
        return PLAN_RETENTION_DAYS[self.plan]


class SupabaseConfig(Strict):
    databases: list[Database] = Field(default_factory=list)
    management: Management | None = None
    project_metrics: ProjectMetrics | None = None
    # Optional: without it nothing is written anywhere (and no database is needed).
    record: Record | None = None

    @model_validator(mode="after")
    def _check(self) -> SupabaseConfig:
        names = [d.name for d in self.databases]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate database names: {', '.join(dupes)}")
        if not self.databases and self.management is None and self.project_metrics is None:
            raise ValueError("configure databases, management or project_metrics")
        if self.record is not None and self.management is None:
            raise ValueError("record mirrors the Management API's backups: configure management")
        return self
