"""The rules' knobs (alert_rules/config.yaml) as one strict, typed model.

Everything that needs a threshold, an SLO, a window or the runbook base URL reads this model: the
rule templates (through `template_values`), the dashboards, Prometheus's config (compose, the
local stack) and the benchmarks. A misspelt or misplaced key, a value of the wrong type or out of
its range fails `python -m alert_rules build` (exit 2) naming the file and the dotted key.

Two conventions keep the rendered files identical to what config.yaml says:

- durations are validated as `common.durations.Duration` (float seconds) and rendered back for
  PromQL by `prom_duration` ("5m", "1h30m"), which is also what `template_values` shows;
- thresholds are `Number`s: an integer stays an integer, so `warning_seconds: 3` renders as `3`
  in PromQL, annotations and dashboards (not `3.0`). Booleans and quoted numbers are refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    model_validator,
)

from common.config import Strict, load_config
from common.durations import Duration

CONFIG = Path(__file__).resolve().parent / "config.yaml"

_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def prom_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration, largest unit first: 300 → "5m", 5400 → "1h30m",
    604800 → "7d", 0.5 → "500ms" (the units `common.durations.parse_duration` reads back)."""
    ms = round(seconds * 1000)
    parts = []
    for unit, size in _UNITS:
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _whole_milliseconds(seconds: float) -> float:
    if abs(seconds * 1000 - round(seconds * 1000)) > 1e-6:
        raise ValueError("must be a whole number of milliseconds (Prometheus cannot express it)")
    return seconds


# A Prometheus duration ("5s", "30m", "1d"): seconds in Python, the duration string in PromQL.
PromDuration = Annotated[
    Duration,
    AfterValidator(_whole_milliseconds),
    PlainSerializer(prom_duration, return_type=str, when_used="json"),
]


def _number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    return value


# A number as written: an int stays an int (see the module docstring).
Number = Annotated[int | float, BeforeValidator(_number)]
Positive = Annotated[Number, Field(gt=0)]
NonNegative = Annotated[Number, Field(ge=0)]
# A share strictly between 0 and 1 (an SLO objective, a share of ids or of a journal left).
Fraction = Annotated[Number, Field(gt=0, lt=1)]
# A share above 0, up to all of it (a hit ratio, a share of the connection limit).
Share = Annotated[Number, Field(gt=0, le=1)]
# A share from 0 up to, not including, 1 (a quorum: "more than this fraction").
Threshold = Annotated[Number, Field(ge=0, lt=1)]
Count = Annotated[StrictInt, Field(gt=0)]
# Whole seconds compared with series values in PromQL (not durations in PromQL syntax).
Seconds = Annotated[StrictInt, Field(gt=0)]
Days = Annotated[StrictInt, Field(gt=0)]


def _selector(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if "{" in value or "}" in value:
        raise ValueError('is inserted between { and }: write the matchers only, e.g. job="x"')
    return value


def _regex(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
    return value


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} must be an absolute http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r} must not have a query or fragment: page names are appended")
    return value.rstrip("/")


Selector = Annotated[str, AfterValidator(_selector)]
Regex = Annotated[str, AfterValidator(_regex)]
# Scrape jobs: the keys of `selectors`, and what `exporters.optional` may name.
Job = Literal["uptime", "recorder", "vercel", "supabase", "billing", "api", "backups"]


class Knobs(Strict):
    """Strict (unknown keys refused, frozen), and no coercion: a quoted number is an error."""

    model_config = ConfigDict(strict=True)


def _hold() -> Any:
    """The `for` of an alert (a Python keyword, so the attribute is `for_`)."""
    return Field(alias="for")


def _ordered(low: tuple[str, float], high: tuple[str, float]) -> None:
    if not low[1] < high[1]:
        raise ValueError(f"{low[0]} ({low[1]:g}) must be below {high[0]} ({high[1]:g})")


class Selectors(Knobs):
    uptime: Selector
    recorder: Selector
    vercel: Selector
    supabase: Selector
    billing: Selector
    # The operator API (api/): scraped like an exporter, so it gets the same health alerts.
    api: Selector
    # The backup worker (backups/): its backup_ metrics, and the same health alerts.
    backups: Selector


class Deployments(Knobs):
    suspect_window_seconds: Seconds


class UptimeDown(Knobs):
    quorum_ratio: Threshold
    for_: PromDuration = _hold()


class Hold(Knobs):
    for_: PromDuration = _hold()


class ResponseTime(Knobs):
    window: PromDuration
    warning_seconds: Positive
    critical_seconds: Positive
    for_: PromDuration = _hold()

    @model_validator(mode="after")
    def _levels(self) -> ResponseTime:
        _ordered(
            ("warning_seconds", self.warning_seconds), ("critical_seconds", self.critical_seconds)
        )
        return self


class Tls(Knobs):
    warning_days: Days
    error_days: Days
    for_: PromDuration = _hold()

    @model_validator(mode="after")
    def _levels(self) -> Tls:
        _ordered(("error_days", self.error_days), ("warning_days", self.warning_days))
        return self


class SecurityHeaders(Knobs):
    for_: PromDuration = _hold()
    hsts_min_max_age_seconds: Seconds


class Uptime(Knobs):
    down: UptimeDown
    probe_location: Hold
    response_time: ResponseTime
    tls: Tls
    security_headers: SecurityHeaders


class Recorder(Knobs):
    journal_full_ratio: Fraction


class Exporters(Knobs):
    down_for: PromDuration
    optional: list[Job]
    optional_seen_within: PromDuration


class BurnRate(Knobs):
    long: PromDuration
    short: PromDuration
    factor: Positive

    @model_validator(mode="after")
    def _windows(self) -> BurnRate:
        if not self.short < self.long:
            raise ValueError(
                f"short ({prom_duration(self.short)}) must be shorter than long"
                f" ({prom_duration(self.long)})"
            )
        return self


class Evidence(Knobs):
    """How much a window must hold before its error ratio is judged (request-based alerts)."""

    min_failed: Count
    min_requests: Count


class Slo(Knobs):
    availability_target: Fraction
    evidence: Evidence
    page: Annotated[list[BurnRate], Field(min_length=1)]
    page_for: PromDuration
    ticket: Annotated[list[BurnRate], Field(min_length=1)]
    ticket_for: PromDuration
    windows: Annotated[list[PromDuration], Field(min_length=1)]
    slow_group_interval: PromDuration

    @property
    def error_budget(self) -> float:
        """The share of failures the objective allows (0.001 for 99.9 %)."""
        return 1 - self.availability_target

    @model_validator(mode="after")
    def _recorded(self) -> Slo:
        if len(set(self.windows)) != len(self.windows):
            raise ValueError("windows: each window once (each is a recording rule)")
        missing = sorted(
            {w for b in (*self.page, *self.ticket) for w in (b.long, b.short)} - set(self.windows)
        )
        if missing:
            names = ", ".join(prom_duration(w) for w in missing)
            raise ValueError(f"windows must list every page and ticket window; missing {names}")
        return self


class PageLoad(Knobs):
    p95_seconds: Positive
    for_: PromDuration = _hold()


class ApiLatency(Knobs):
    p50_seconds: Positive
    for_: PromDuration = _hold()


class VercelErrors(Knobs):
    warning_ratio: Fraction
    critical_ratio: Fraction
    warning_for: PromDuration
    critical_for: PromDuration
    evidence: Evidence

    @model_validator(mode="after")
    def _levels(self) -> VercelErrors:
        _ordered(("warning_ratio", self.warning_ratio), ("critical_ratio", self.critical_ratio))
        return self


class VercelCache(Knobs):
    min_hit_ratio: Share
    window: PromDuration
    for_: PromDuration = _hold()
    min_lookup_rate: NonNegative


class VercelDeployments(Knobs):
    failed_window: PromDuration


class VercelBuild(Knobs):
    factor: Positive
    recent: PromDuration
    baseline: PromDuration
    min_builds: Count
    for_: PromDuration = _hold()


class VercelDrains(Knobs):
    silent_after_seconds: Seconds
    remembered: PromDuration

    @model_validator(mode="after")
    def _seen(self) -> VercelDrains:
        if not self.silent_after_seconds < self.remembered:
            raise ValueError(
                f"silent_after_seconds ({self.silent_after_seconds}) must be shorter than"
                f" remembered ({prom_duration(self.remembered)}), or no drain is ever silent"
            )
        return self


class VercelApi(Knobs):
    stale_for: PromDuration


class Vercel(Knobs):
    min_request_rate: NonNegative
    cache_hits: Regex
    cache_lookups: Regex
    cache_path_types: Regex
    error_classes: Regex
    page_load: PageLoad
    api_latency: ApiLatency
    errors: VercelErrors
    cache: VercelCache
    deployments: VercelDeployments
    build: VercelBuild
    drains: VercelDrains
    api: VercelApi


class Connections(Knobs):
    max_ratio: Share
    for_: PromDuration = _hold()


class SlowQuery(Knobs):
    mean_seconds: Positive
    window: PromDuration
    min_calls_per_second: NonNegative
    for_: PromDuration = _hold()


class ReplicationLag(Knobs):
    seconds: Positive
    for_: PromDuration = _hold()


class Wraparound(Knobs):
    warning_remaining: Fraction
    critical_remaining: Fraction
    for_: PromDuration = _hold()

    @model_validator(mode="after")
    def _levels(self) -> Wraparound:
        _ordered(
            ("critical_remaining", self.critical_remaining),
            ("warning_remaining", self.warning_remaining),
        )
        return self


class Disk(Knobs):
    horizon_seconds: Seconds
    history: PromDuration
    for_: PromDuration = _hold()


class Backups(Knobs):
    max_age_seconds: Seconds
    for_: PromDuration = _hold()


class Management(Knobs):
    stale_for: PromDuration


class Supabase(Knobs):
    connections: Connections
    slow_query: SlowQuery
    replication_lag: ReplicationLag
    wraparound: Wraparound
    disk: Disk
    collectors: Hold
    backups: Backups
    services: Hold
    management: Management


class SizeDrop(Knobs):
    min_ratio: Fraction
    for_: PromDuration = _hold()


class Expiring(Knobs):
    lead_seconds: Seconds
    for_: PromDuration = _hold()


class Drills(Knobs):
    failed: Hold
    missing: Hold
    rto: Hold


class OwnBackups(Knobs):
    """The backup record's alerts (backups.alerts.yaml.j2). Each target's own limits (its
    maximum backup age, drill window and RTO target) are the backup worker's config, exported
    as series; these are the knobs that are the same for every target."""

    missing: Hold
    failed: Hold
    size_drop: SizeDrop
    expiring: Expiring
    drills: Drills
    record_unavailable: Hold
    supabase_record_failing: Hold


class Budget(Knobs):
    info_ratio: Positive
    warning_ratio: Positive
    critical_ratio: Positive
    for_: PromDuration = _hold()

    @model_validator(mode="after")
    def _levels(self) -> Budget:
        _ordered(("info_ratio", self.info_ratio), ("warning_ratio", self.warning_ratio))
        _ordered(("warning_ratio", self.warning_ratio), ("critical_ratio", self.critical_ratio))
        return self


class Projected(Knobs):
    min_elapsed_ratio: Threshold
    for_: PromDuration = _hold()


class CostPerUser(Knobs):
    max_usd: Positive
    for_: PromDuration = _hold()


class MomGrowth(Knobs):
    max_ratio: Positive
    min_previous_usd: NonNegative
    for_: PromDuration = _hold()


class UnitCost(Knobs):
    max_growth_ratio: Positive
    for_: PromDuration = _hold()


class Spike(Knobs):
    factor: Positive
    min_usd: NonNegative
    for_: PromDuration = _hold()


class Sources(Knobs):
    failing_for: PromDuration


class Billing(Knobs):
    budget: Budget
    projected: Projected
    cost_per_user: CostPerUser
    mom_growth: MomGrowth
    unit_cost: UnitCost
    spike: Spike
    sources: Sources


class AlertRulesConfig(Knobs):
    """alert_rules/config.yaml. Every key is required: a default here would be a second place
    where a threshold lives."""

    runbook_base_url: Annotated[str, AfterValidator(_base_url)]
    selectors: Selectors
    deployments: Deployments
    # Prometheus's global evaluation_interval (compose/prometheus_config.py writes this one).
    evaluation_interval: PromDuration
    uptime: Uptime
    recorder: Recorder
    exporters: Exporters
    slo: Slo
    vercel: Vercel
    supabase: Supabase
    billing: Billing
    backups: OwnBackups

    def runbook_url(self, alert: str) -> str:
        """The one runbook link of an alert: <base>/<Alert>.md#<alert> (rules and dashboards)."""
        return f"{self.runbook_base_url}/{alert}.md#{alert.lower()}"

    def template_values(self) -> dict[str, Any]:
        """The config as the Jinja templates read it (`cfg`): plain values under the keys of
        config.yaml (`for`, not `for_`), durations rendered back as PromQL durations."""
        return self.model_dump(mode="json", by_alias=True)


def load_rules(path: Path = CONFIG) -> AlertRulesConfig:
    """Load and check alert_rules/config.yaml (or `path`); raises common.config.ConfigError."""
    return load_config(path, AlertRulesConfig)
