"""The uptime exporter's config file: probe defaults and the list of targets, strictly checked."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from common.config import SecretFile, Strict
from common.durations import Duration

# Target names become the `target` label: keep them short, stable and bounded by this file.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_STATUS_SPEC = re.compile(r"^([1-5])xx$")


class HttpProbe(Strict):
    url: str
    method: Literal["GET", "HEAD", "POST", "OPTIONS"] = "GET"
    # Each entry is a code (200) or a class ("2xx"). Redirects are followed first when enabled.
    expect_status: list[int | str] = Field(default_factory=lambda: list[int | str](["2xx"]))
    # A regular expression searched in the first `max_body_bytes` of the body.
    body_match: str | None = None
    follow_redirects: bool = True
    max_redirects: Annotated[int, Field(ge=0, le=20)] = 5
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    # Read at start-up; sent as `Authorization: Bearer …`; never logged or exported.
    bearer_token_file: SecretFile | None = None
    tls_verify: bool = True
    max_body_bytes: Annotated[int, Field(ge=0, le=16 * 1024 * 1024)] = 256 * 1024

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{value!r} must be an http:// or https:// URL")
        if not parts.hostname:
            raise ValueError(f"{value!r} has no host")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"{value!r} has a bad port") from exc
        if parts.username or parts.password:
            raise ValueError("credentials in URLs are refused: use bearer_token_file")
        return value

    @field_validator("expect_status")
    @classmethod
    def _status(cls, value: list[int | str]) -> list[int | str]:
        if not value:
            raise ValueError("must list at least one status code or class such as '2xx'")
        for item in value:
            if isinstance(item, int) and not 100 <= item <= 599:
                raise ValueError(f"{item} is not an HTTP status code")
            if isinstance(item, str) and not _STATUS_SPEC.match(item):
                raise ValueError(f"{item!r} is not a status class such as '2xx'")
        return value

    @field_validator("body_match")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, val in value.items():
            if not re.fullmatch(r"[A-Za-z0-9-]+", name) or "\r" in val or "\n" in val:
                raise ValueError(f"header {name!r} has a bad name or value")
            if name.lower() in ("host", "content-length", "connection", "authorization"):
                raise ValueError(f"header {name!r} is set by the prober")
        return value


class TcpProbe(Strict):
    address: str  # host:port

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} must be host:port")
        return value


class Target(Strict):
    name: str
    # Which platform service this endpoint belongs to (web, api, db…); carried by an info series
    # and joined into alerts, so routing and the record can say what is affected.
    service: str = "platform"
    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    interval: Duration | None = None
    timeout: Duration | None = None

    @field_validator("name", "service")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} must match {_NAME.pattern}")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Target:
        if (self.http is None) == (self.tcp is None):
            raise ValueError("set exactly one of 'http' or 'tcp'")
        return self


class UptimeConfig(Strict):
    # How often each target is probed. Better Uptime's fastest plan probes every 30 s; we probe
    # more often because detection time is the floor of alert latency.
    interval: Duration = 15.0
    # Per-probe deadline (all phases and redirects). Must be below `interval`.
    timeout: Duration = 10.0
    # Probes in flight at once, so a thousand targets do not open a thousand sockets together.
    concurrency: Annotated[int, Field(ge=1, le=4096)] = 64
    # Each target starts at a random offset of up to this fraction of its interval, so targets
    # sharing a host, and the exporters of different regions, are not in lock-step.
    jitter: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1
    # A failing probe is re-tried this many times before it is reported as a failure: one
    # dropped packet must not page anyone. 1 means report the first failure.
    confirm_attempts: Annotated[int, Field(ge=1, le=5)] = 2
    confirm_delay: Duration = 1.0
    targets: list[Target]

    @model_validator(mode="after")
    def _check(self) -> UptimeConfig:
        names = [t.name for t in self.targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate target names: {', '.join(dupes)}")
        if not self.targets:
            raise ValueError("targets: at least one target is required")
        for t in self.targets:
            timeout = t.timeout or self.timeout
            interval = t.interval or self.interval
            if timeout >= interval:
                raise ValueError(f"target {t.name!r}: timeout must be shorter than interval")
        return self
