"""The Vercel exporter's config file: the REST poller, the projects it watches and the drains."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from common.config import SecretFile, Strict, read_secret_files
from common.durations import Duration

# Project names become the `project` label: short, stable, bounded by this file.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_ROUTE = re.compile(r"^/[^\s?#]{0,200}$")


class Project(Strict):
    # Vercel's project id (prj_…): drain records and deployments carry it.
    id: Annotated[str, Field(min_length=1, max_length=100)]
    # The `project` label. Records for project ids not listed here are counted as "unlisted".
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value) or value == "unlisted":
            raise ValueError(f"{value!r} must match {_NAME.pattern} (and not be 'unlisted')")
        return value


class Api(Strict):
    base_url: str = "https://api.vercel.com"
    # A Vercel access token, read at start-up; without it the deployments poller is off.
    token_file: SecretFile | None = None
    # Team scope (team_…), sent as teamId on every request. Personal accounts leave it out.
    team_id: str | None = None
    # How often deployments are refreshed. Vercel allows 500 deployment-list requests a minute
    # per user; an incremental refresh costs one request per project, so 30 s is cheap.
    refresh_interval: Duration = 30.0
    timeout: Duration = 10.0
    # How far back the first load reads: build-time histograms and the last-ready time start
    # from what happened in this window.
    lookback: Duration = 7 * 86400.0
    # Served data older than this (the API has been failing) is dropped, and vercel_up is 0.
    stale_after: Duration = 300.0
    # Our own ceiling, under Vercel's: the exporter must never spend the whole budget that the
    # team's CI and CLI share. Requests beyond it wait for the next minute.
    max_requests_per_minute: Annotated[int, Field(ge=1, le=2000)] = 120
    # Deployments seen before this long ago that have not reached a final state are re-asked on
    # every refresh; the overlap also absorbs clock skew between Vercel's hosts.
    overlap: Duration = 300.0
    # Where counted deployments are remembered, so a restart does not count them again.
    state_file: Path | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} must be an http(s) URL")
        if "@" in value.split("//", 1)[1].split("/", 1)[0]:
            raise ValueError("credentials in URLs are refused: use token_file")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> Api:
        if self.timeout >= self.refresh_interval:
            raise ValueError("timeout must be shorter than refresh_interval")
        if self.stale_after <= self.refresh_interval:
            raise ValueError("stale_after must be longer than refresh_interval")
        return self


class Drain(Strict):
    # The drain's signature secret (Vercel shows it when the drain is created).
    secret_file: SecretFile
    # The drain's sampling rate as configured in Vercel (0 < rate ≤ 1). Vercel's records do not
    # carry it, so counts are scaled by 1/rate here to estimate real traffic.
    sample_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0


class Drains(Strict):
    logs: Drain | None = None
    traces: Drain | None = None
    speed_insights: Drain | None = None
    # The code Vercel asks for when a drain endpoint is added (x-vercel-verify); sent on every
    # drain response.
    verify_code_file: SecretFile | None = None
    # Bodies above this are refused with 413 before they are read whole.
    max_body_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = 64 * 1024 * 1024
    # Where a delivery's bytes past its first MiB wait (in an unlinked file) while its signature
    # is checked, so wrongly signed bodies cost no memory; created at start. Default: the
    # system's temporary directory. Without a writable one, bodies are held in memory (a
    # warning is logged).
    spool_dir: Path | None = None
    # Route templates get their own label value up to this many per project; later ones are
    # counted as "other". Listed routes always have their own.
    max_routes: Annotated[int, Field(ge=0, le=1000)] = 50
    routes: list[str] = Field(default_factory=list)
    # Route templates starting with one of these are the API (the spec's API p50 target);
    # the rest are pages (its page-load target).
    api_prefixes: list[str] = Field(default_factory=lambda: ["/api/"])
    # Speed Insights sends `value` in milliseconds for time metrics; set 1 if yours sends seconds.
    web_vitals_value_scale: Annotated[float, Field(gt=0.0)] = 0.001

    @field_validator("routes", "api_prefixes")
    @classmethod
    def _routes(cls, value: list[str]) -> list[str]:
        for route in value:
            if not _ROUTE.match(route):
                raise ValueError(f"{route!r} must be a path template starting with '/'")
        return value


class VercelConfig(Strict):
    api: Api = Field(default_factory=Api)
    projects: list[Project]
    drains: Drains = Field(default_factory=Drains)

    @model_validator(mode="after")
    def _check(self) -> VercelConfig:
        if not self.projects:
            raise ValueError("projects: at least one project is required")
        for attr in ("id", "name"):
            values = [getattr(p, attr) for p in self.projects]
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate project {attr}s: {', '.join(dupes)}")
        return self

    def project_names(self) -> dict[str, str]:
        return {p.id: p.name for p in self.projects}


# The config key of each secret, and the name the exporter knows it by.
SECRET_NAMES = {
    "api.token_file": "token",
    "drains.verify_code_file": "verify_code",
    "drains.logs.secret_file": "logs",
    "drains.traces.secret_file": "traces",
    "drains.speed_insights.secret_file": "speed_insights",
}


def secrets_by_name(values: dict[str, str]) -> dict[str, str]:
    """The secrets read_secret_files read ({dotted key: value}) under the exporter's names:
    "token", "verify_code", and the drain names; unset keys are absent."""
    return {SECRET_NAMES[key]: value for key, value in values.items()}


def read_secrets(cfg: VercelConfig, path: Path) -> dict[str, str]:
    """Every secret the config at `path` names, by name, read now (ConfigError listing each
    bad file with its key), for callers that load the config themselves."""
    return secrets_by_name(read_secret_files(cfg, path))
