"""The `maintenance` section of the API's config, and the windows file (maintenance windows as
code). Everything here is checked when the config is loaded, so a bad entry fails the start
(exit 2, naming the file, the entry's key and why) instead of being found at sync time.

The windows file:

    windows:
      - services: [database]
        starts_at: 2026-12-05T02:00:00Z
        ends_at: 2026-12-05T03:00:00Z
        reason: Supabase Postgres major upgrade
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from common import months as months_of
from common.config import ConfigError, Strict, load_config
from common.durations import Duration

# The alert `service` label values the committed rules use (alert_rules/generated): each can be
# put in maintenance without configuring anything. Uptime targets carry their own service
# (uptime.yaml `service:`): add those names to maintenance.services to cover them.
DEFAULT_SERVICES = ("vercel", "database", "billing", "monitoring", "recorder")
# A label value: short, lower case, no regex metacharacters (it goes into a silence's regex).
ServiceName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
MAX_SERVICES_PER_WINDOW = 20
MAX_REASON = 1000
Reason = Annotated[str, StringConstraints(min_length=1, max_length=MAX_REASON, pattern=r"\S")]
# The namespace of config windows' ids (uuid5 of the entry): the same entry, the same id.
CONFIG_NAMESPACE = uuid.UUID("5b0e6a52-7f0c-4f43-9d8c-4d61696e7400")


@dataclass(frozen=True, slots=True)
class Window:
    """A window as the checks see it, from a request or from the file."""

    services: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime
    reason: str


class FileWindow(Strict):
    services: Annotated[
        tuple[ServiceName, ...], Field(min_length=1, max_length=MAX_SERVICES_PER_WINDOW)
    ]
    # With an offset (Z or +hh:mm): a window in "local time" means different hours to different
    # readers.
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: Reason

    def window(self) -> Window:
        return Window(
            tuple(sorted(set(self.services))),
            self.starts_at.astimezone(UTC),
            self.ends_at.astimezone(UTC),
            self.reason,
        )


class WindowsFile(Strict):
    windows: tuple[FileWindow, ...] = ()


def config_window_id(w: Window) -> uuid.UUID:
    """A file entry's row id: stable across restarts and re-reads, and new when the entry
    changes (the old entry's window is then ended and the new one created)."""
    key = json.dumps(
        [list(w.services), w.starts_at.isoformat(), w.ends_at.isoformat(), w.reason],
        separators=(",", ":"),
    )
    return uuid.uuid5(CONFIG_NAMESPACE, key)


def _midnight(d: date) -> datetime:
    return datetime.combine(d, time(), UTC)


def months(w: Window) -> list[tuple[datetime, datetime]]:
    """The calendar months (UTC) the window touches, as [start, end) pairs."""
    out = []
    start = _midnight(months_of.month_start(w.starts_at.astimezone(UTC).date()))
    while start < w.ends_at:
        end = _midnight(months_of.next_month(start.date()))
        out.append((start, end))
        start = end
    return out


def overlap_seconds(w: Window, start: datetime, end: datetime) -> float:
    return max(0.0, (min(w.ends_at, end) - max(w.starts_at, start)).total_seconds())


class MaintenanceSettings(Strict):
    # The alert `service` values a window may name (anything else is refused; these are also
    # the labels of api_maintenance_window_active, each exported from the start).
    services: Annotated[tuple[ServiceName, ...], Field(min_length=1, max_length=100)] = (
        DEFAULT_SERVICES
    )
    # Spec (SLA): 4 hours of planned maintenance a month. A window that would take one of its
    # services over this within a calendar month (UTC) is refused.
    monthly_budget: Duration = 4 * 3600.0
    # The longest single window: a typo in a date must not silence a service for a month.
    max_window: Duration = 4 * 3600.0
    # The shortest: a window of a second is a typo, and each window is a silence of its own.
    min_window: Duration = 60.0
    # How far ahead a window may be declared: a year-9999 date is a typo, not a plan.
    max_ahead: Duration = 366 * 86400.0
    # A window may start this far in the past (the time it takes to type the request); further
    # back is refused: maintenance declared after the fact would rewrite the error budget.
    start_grace: Duration = 300.0
    # Windows as code: a YAML file of windows (config/example/maintenance.yaml). Read at start
    # (a bad entry stops the API, exit 2) and again every sync_interval (a bad edit then is
    # logged and the previous content kept); its windows become rows with source 'config'.
    windows_file: Path | None = None
    # The machine_tokens entry (role admin) the file's windows are written as: row-level
    # security and the audit log see that user. Required with windows_file.
    machine: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")] | None = None
    sync_interval: Duration = 60.0

    @model_validator(mode="after")
    def _check(self) -> MaintenanceSettings:
        if self.max_window <= 0 or self.monthly_budget <= 0:
            raise ValueError("max_window and monthly_budget must be positive")
        if self.max_window > 31 * 86400:
            raise ValueError("max_window: at most 31 days")
        if len(set(self.services)) != len(self.services):
            raise ValueError("services: listed twice")
        if self.windows_file is not None:
            if self.machine is None:
                raise ValueError(
                    "machine: required with windows_file (the admin machine_tokens entry the "
                    "file's windows are written as)"
                )
            problems = self.file_problems(self.read_windows())
            if problems:
                raise ValueError(f"{self.windows_file}: " + "; ".join(problems))
        return self

    def read_windows(self) -> tuple[Window, ...]:
        """The windows file's windows; ValueError naming the file and key when it is bad."""
        assert self.windows_file is not None
        try:
            doc = load_config(self.windows_file, WindowsFile)
        except ConfigError as exc:
            raise ValueError("; ".join(f"{exc.path}: {p}" for p in exc.problems)) from None
        return tuple(w.window() for w in doc.windows)

    def file_problems(self, windows: tuple[Window, ...]) -> list[str]:
        """What is wrong with the file's windows on their own (the database may refuse more:
        an overlap with a window made through the API, found at sync and logged)."""
        problems = []
        for i, w in enumerate(windows):
            why = self.shape_problem(w)
            if why:
                problems.append(f"windows[{i}]: {why}")
            for j in range(i):
                other = windows[j]
                common = sorted(set(w.services) & set(other.services))
                if common and w.starts_at < other.ends_at and other.starts_at < w.ends_at:
                    problems.append(f"windows[{i}]: overlaps windows[{j}] for {', '.join(common)}")
        for service in self.services:
            for start, end in {m for w in windows for m in months(w)}:
                used = sum(overlap_seconds(w, start, end) for w in windows if service in w.services)
                if used > self.monthly_budget:
                    problems.append(
                        f"windows: {service} has {used / 3600:g} h of maintenance in "
                        f"{start:%Y-%m}, over maintenance.monthly_budget "
                        f"({self.monthly_budget / 3600:g} h)"
                    )
        return problems

    def shape_problem(self, w: Window) -> str | None:
        """Why a window is wrong in itself (past and overlap aside), or None."""
        if w.ends_at <= w.starts_at:
            return "ends_at must be after starts_at"
        unknown = [s for s in w.services if s not in self.services]
        if unknown:
            return (
                f"unknown service {', '.join(unknown)} (maintenance.services: "
                f"{', '.join(self.services)})"
            )
        length = (w.ends_at - w.starts_at).total_seconds()
        if length < self.min_window:
            return (
                f"lasts {length:g} s, shorter than maintenance.min_window ({self.min_window:g} s)"
            )
        if length > self.max_window:
            return (
                f"lasts {length / 3600:g} h, longer than maintenance.max_window "
                f"({self.max_window / 3600:g} h)"
            )
        return None
