"""Runs every target's probe on its own interval, with jitter, a concurrency bound and confirmation."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from common.build_info import build_info
from common.config import read_secret_file
from exporters.uptime.config import Target, UptimeConfig
from exporters.uptime.probe import HttpSpec, ProbeResult, TcpSpec, probe_http, probe_tcp

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PlannedTarget:
    name: str
    service: str
    kind: str  # "http" | "tcp"
    interval: float
    timeout: float
    spec: HttpSpec | TcpSpec


@dataclass(slots=True)
class TargetState:
    """What /metrics shows for one target: the latest result and the running counters."""

    target: PlannedTarget
    last: ProbeResult | None = None
    probes: int = 0
    failures: int = 0
    retries: int = 0


@dataclass(slots=True)
class ProberStats:
    in_flight: int = 0
    started_at: float = field(default_factory=time.time)


def plan(cfg: UptimeConfig) -> list[PlannedTarget]:
    """Turn config into ready-to-run specs; secrets are read here, once."""
    out = []
    for t in cfg.targets:
        out.append(
            PlannedTarget(
                name=t.name,
                service=t.service,
                kind="http" if t.http else "tcp",
                interval=t.interval or cfg.interval,
                timeout=t.timeout or cfg.timeout,
                spec=_spec(t),
            )
        )
    return out


def _spec(t: Target) -> HttpSpec | TcpSpec:
    if t.tcp is not None:
        host, _, port = t.tcp.address.rpartition(":")
        return TcpSpec(host=host.strip("[]"), port=int(port))
    h = t.http
    assert h is not None
    headers = list(h.headers.items())
    if h.bearer_token_file is not None:
        headers.append(("Authorization", f"Bearer {read_secret_file(h.bearer_token_file)}"))
    return HttpSpec(
        url=h.url,
        method=h.method,
        headers=tuple(headers),
        body=(h.body or "").encode(),
        expect_status=tuple(h.expect_status),
        body_match=re.compile(h.body_match.encode()) if h.body_match else None,
        follow_redirects=h.follow_redirects,
        max_redirects=h.max_redirects,
        tls_verify=h.tls_verify,
        max_body_bytes=h.max_body_bytes if h.body_match else min(h.max_body_bytes, 64 * 1024),
    )


def endpoint_of(t: PlannedTarget) -> str:
    """scheme://host:port of a target, for the info series: never the path or query."""
    if isinstance(t.spec, TcpSpec):
        return f"tcp://{t.spec.host}:{t.spec.port}"
    parts = urlsplit(t.spec.url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


class Prober:
    """One task per target; a semaphore bounds how many probes are in flight at once."""

    def __init__(self, cfg: UptimeConfig, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.states = {t.name: TargetState(t) for t in plan(cfg)}
        self.stats = ProberStats()
        self._sem = asyncio.Semaphore(cfg.concurrency)
        self._rng = rng or random.Random()
        ver, _ = build_info()
        self._ua = f"wsinfra-uptime/{ver}"
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for state in self.states.values():
            self._tasks.append(asyncio.create_task(self._loop(state), name=state.target.name))

    async def wait(self) -> None:
        """Until the probe tasks end (they do not, unless cancelled)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def healthy(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def _loop(self, state: TargetState) -> None:
        t = state.target
        # A random phase per target and process spreads a large config out, and keeps two
        # regions' exporters with the same config from probing in lock-step.
        next_at = time.monotonic() + self._rng.uniform(0, t.interval * self.cfg.jitter)
        while True:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await self.probe_once(state)
            except Exception:
                # A bug must not silently stop one target's probing; the next cycle tries again.
                log.exception("probe crashed", extra={"target": t.name})
            next_at += t.interval
            if next_at < time.monotonic():
                # Overloaded or a long confirmation: skip missed cycles rather than burst.
                next_at = time.monotonic() + self._rng.uniform(0, t.interval * self.cfg.jitter)

    async def _attempt(self, t: PlannedTarget) -> ProbeResult:
        async with self._sem:
            self.stats.in_flight += 1
            try:
                if isinstance(t.spec, HttpSpec):
                    return await probe_http(t.spec, t.timeout, self._ua)
                return await probe_tcp(t.spec, t.timeout)
            finally:
                self.stats.in_flight -= 1

    async def probe_once(self, state: TargetState) -> ProbeResult:
        t = state.target
        result = await self._attempt(t)
        attempts = 1
        while not result.success and attempts < self.cfg.confirm_attempts:
            state.retries += 1
            await asyncio.sleep(self.cfg.confirm_delay)
            result = await self._attempt(t)
            attempts += 1
        state.last = result
        state.probes += 1
        if not result.success:
            state.failures += 1
            log.debug("probe failed", extra={"target": t.name, "reason": result.reason})
        return result
