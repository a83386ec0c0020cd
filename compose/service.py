"""What a row of the local stack's table (compose/services.py) holds, and the `Stack` a row's
config writer and conditions are given: the stack's directories, mode, ports and services."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TypeAlias, TypeVar, cast

from compose.processes import ROOT, find_binary

HOST = "127.0.0.1"  # the local stack listens on loopback only
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Port:
    """A port a service listens on. `env` (WSINFRA_<KEY>_PORT) moves it; `container` is the port
    inside its compose container (None: compose does not publish it)."""

    env: str
    default: int
    container: int | None = None

    @property
    def key(self) -> str:
        """Its short name, as isolated_env's ports and Stack.port() know it: PLATFORM_CONTROL."""
        return self.env.removeprefix("WSINFRA_").removesuffix("_PORT")


PORT_ENV = re.compile(r"WSINFRA_[A-Z0-9_]+_PORT")


@dataclass(frozen=True, slots=True)
class Python:
    """A service run as `python -m module` with this interpreter."""

    module: str

    def argv(self) -> list[str]:
        return [sys.executable, "-m", self.module]


@dataclass(frozen=True, slots=True)
class Binary:
    """A service run from an installed binary, the first of `names` found on PATH."""

    names: tuple[str, ...]

    def argv(self) -> list[str]:
        return [find_binary(*self.names)]


Program: TypeAlias = Python | Binary
# Writes and validates the service's runtime config; returns the arguments after the program.
ConfigWriter: TypeAlias = Callable[["Stack", "Service"], list[str]]
Condition: TypeAlias = Callable[["Stack"], bool]
# What `up` and `status` print after the address: fixed, or made from the stack.
Label: TypeAlias = str | Callable[["Stack"], str]


def always(stack: Stack) -> bool:
    return True


def real_mode(stack: Stack) -> bool:
    """On only when the stack monitors the real platform (config/local/uptime.yaml exists)."""
    return not stack.demo


@dataclass(frozen=True, slots=True)
class Scrape:
    """A Prometheus job that scrapes the service. Rows sharing a job (the regions' uptime
    exporters) share one Scrape; `sd_path` scrapes the targets of the service's HTTP service
    discovery instead of the service itself."""

    job: str
    interval: str | None = None
    timeout: str | None = None
    metrics_path: str | None = None
    sd_path: str | None = None
    sd_refresh: str = "1m"
    enabled_when: Condition = always  # in the local stack; compose scrapes every job


@dataclass(frozen=True, slots=True)
class Service:
    """One process of the local stack (and the compose service of the same name)."""

    name: str  # pid file, log file, `status` line, compose service
    program: Program
    port: Port  # where it listens: the address `status` shows and Prometheus scrapes
    config: ConfigWriter
    ready: str  # a path that answers 200 once it serves
    label: Label
    shown_path: str = "/"  # the path of the address shown
    scrapes: tuple[Scrape, ...] = ()
    demo_only: bool = False
    enabled_when: Condition = always
    more_ports: tuple[Port, ...] = ()
    ready_port: str | None = None  # the key of the port `ready` is on, if not `port`
    region: str | None = None  # an uptime exporter's region: a target label when scraped

    @property
    def ports(self) -> tuple[Port, ...]:
        return (self.port, *self.more_ports)


class Stack:
    """The local stack as configured by the environment (WSINFRA_RUN_DIR, WSINFRA_CONFIG_DIR,
    WSINFRA_RECORDER_DB, WSINFRA_<KEY>_PORT) for a table of services."""

    def __init__(self, table: Sequence[Service], env: Mapping[str, str]) -> None:
        self.table = tuple(table)
        self.env = dict(env)
        self.run = Path(env.get("WSINFRA_RUN_DIR", ROOT / ".run"))
        self.config_dir = Path(env.get("WSINFRA_CONFIG_DIR", ROOT / "config" / "local"))
        self.recorder_db = env.get("WSINFRA_RECORDER_DB", "wsinfra")
        self.ports = {p.key: int(env.get(p.env, p.default)) for s in table for p in s.ports}
        self._once: dict[str, object] = {}

    @classmethod
    def from_env(cls, table: Sequence[Service]) -> Stack:
        return cls(table, os.environ)

    @cached_property
    def demo(self) -> bool:
        """The DEMO runs when there is no config/local/uptime.yaml."""
        return not (self.config_dir / "uptime.yaml").exists()

    @property
    def generated(self) -> Path:
        """Where the runtime configs are written."""
        return self.run / "config"

    @property
    def secrets(self) -> Path:
        return self.run / "demo" / "secrets" if self.demo else self.config_dir / "secrets"

    @cached_property
    def services(self) -> tuple[Service, ...]:
        """The rows that run in this mode, in start order."""
        return tuple(
            s for s in self.table if (self.demo or not s.demo_only) and s.enabled_when(self)
        )

    def port(self, key: str) -> int:
        return self.ports[key]

    def listen(self, key: str) -> str:
        return f"{HOST}:{self.ports[key]}"

    def url(self, key: str, path: str = "/") -> str:
        return f"http://{self.listen(key)}{path}"

    def ready_url(self, service: Service) -> str:
        return self.url(service.ready_port or service.port.key, service.ready)

    def shown(self, service: Service) -> str:
        """The address `up` and `status` print for the service, and its label."""
        label = service.label if isinstance(service.label, str) else service.label(self)
        address = self.url(service.port.key, service.shown_path)
        return f"{address}  ({label})" if label else address

    def once(self, key: str, make: Callable[[], T]) -> T:
        """`make()` the first time `key` is asked for, the same value after: what several
        services' writers share (the recorder's database, the uptime exporters' config)."""
        if key not in self._once:
            self._once[key] = make()
        return cast(T, self._once[key])
