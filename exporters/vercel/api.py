"""Vercel REST API client: bearer auth, team scope, rate-limit accounting and classified errors.

Vercel rate-limits per endpoint and says so in X-RateLimit-{Limit,Remaining,Reset} (Reset is
absolute epoch seconds). When Remaining reaches 0, or on 429, we wait for the reset instead of
trying again; on top of that a per-minute ceiling of our own leaves room for CI and the CLI,
which share the same budget. Error texts never include the token or response bodies.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from exporters.vercel.config import Api

REASONS = ("auth", "rate_limited", "server", "timeout", "connect", "malformed", "client")
RETRYABLE = frozenset({"server", "timeout", "connect"})


class ApiError(Exception):
    def __init__(self, reason: str, detail: str, retry_at: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retry_at = retry_at


@dataclass(slots=True)
class ApiStats:
    requests: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    limit_remaining: dict[str, int] = field(default_factory=dict)
    limit_reset: dict[str, float] = field(default_factory=dict)
    waited_seconds: float = 0.0


class VercelApi:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        team_id: str | None,
        timeout: float,
        max_requests_per_minute: int,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
        max_wait: float = 120.0,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "wsinfra-vercel-exporter"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )
        self.team_id = team_id
        self.max_per_minute = max_requests_per_minute
        self.clock = clock
        self.sleep = sleep
        # Waiting longer than this inside one refresh gives up the refresh instead; the loop
        # then sleeps until the reset.
        self.max_wait = max_wait
        self.stats = ApiStats()
        self._sent: collections.deque[float] = collections.deque()
        self._blocked_until: dict[str, float] = {}

    @classmethod
    def from_config(
        cls,
        cfg: Api,
        token: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> VercelApi:
        return cls(
            cfg.base_url,
            token,
            team_id=cfg.team_id,
            timeout=cfg.timeout,
            max_requests_per_minute=cfg.max_requests_per_minute,
            clock=clock,
            sleep=sleep,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _pace(self, endpoint: str) -> None:
        now = self.clock()
        until = self._blocked_until.get(endpoint, 0.0)
        while self._sent and self._sent[0] <= now - 60:
            self._sent.popleft()
        if len(self._sent) >= self.max_per_minute:
            until = max(until, self._sent[0] + 60)
        if until > now:
            wait = until - now
            if wait > self.max_wait:
                raise ApiError("rate_limited", f"{endpoint} blocked for {wait:.0f}s", until)
            self.stats.waited_seconds += wait
            await self.sleep(wait)
        self._sent.append(self.clock())

    async def get(self, endpoint: str, path: str, params: dict[str, Any]) -> Any:
        """GET and decode JSON; `endpoint` names the rate-limit bucket and the metric label."""
        await self._pace(endpoint)
        query = {k: v for k, v in params.items() if v is not None}
        if self.team_id:
            query["teamId"] = self.team_id
        try:
            resp = await self._client.get(path, params=query)
        except httpx.TimeoutException:
            self._count(endpoint, "error", "timeout")
            raise ApiError("timeout", f"{endpoint}: no answer in time") from None
        except httpx.TransportError as exc:
            self._count(endpoint, "error", "connect")
            raise ApiError("connect", f"{endpoint}: {type(exc).__name__}") from None
        self._limits(endpoint, resp)
        code = resp.status_code
        if code == 429:
            reset = self._reset_from_429(resp)
            self._blocked_until[endpoint] = reset
            self._count(endpoint, str(code), "rate_limited")
            raise ApiError("rate_limited", f"{endpoint}: HTTP 429", reset)
        if code in (401, 403):
            self._count(endpoint, str(code), "auth")
            raise ApiError("auth", f"{endpoint}: HTTP {code} (check the token and team)")
        if code >= 500:
            self._count(endpoint, str(code), "server")
            raise ApiError("server", f"{endpoint}: HTTP {code}")
        if code != 200:
            self._count(endpoint, str(code), "client")
            raise ApiError("client", f"{endpoint}: HTTP {code}")
        try:
            doc = resp.json()
        except ValueError:
            self._count(endpoint, str(code), "malformed")
            raise ApiError("malformed", f"{endpoint}: body is not JSON") from None
        self._count(endpoint, str(code), None)
        return doc

    def _count(self, endpoint: str, code: str, error: str | None) -> None:
        self.stats.requests[(endpoint, code)] += 1
        if error:
            self.stats.errors[error] += 1

    def _limits(self, endpoint: str, resp: httpx.Response) -> None:
        remaining = _int_header(resp, "X-RateLimit-Remaining")
        reset = _int_header(resp, "X-RateLimit-Reset")
        if remaining is not None:
            self.stats.limit_remaining[endpoint] = remaining
        if reset is not None:
            self.stats.limit_reset[endpoint] = float(reset)
        if remaining == 0 and reset is not None:
            self._blocked_until[endpoint] = float(reset)

    def _reset_from_429(self, resp: httpx.Response) -> float:
        reset = _int_header(resp, "X-RateLimit-Reset")
        if reset is None:
            try:
                limit = resp.json()["error"]["limit"]
                reset = int(limit["reset"])
            except (ValueError, KeyError, TypeError):
                reset = None
        now = self.clock()
        if reset is None or reset <= now:
            return now + 60.0  # Vercel's windows are a minute; don't hammer an unknown one
        # A reset far in the future (clock skew or a day-long limit) still gets re-checked
        # every ten minutes rather than trusted blindly.
        return min(float(reset), now + 600.0)


def _int_header(resp: httpx.Response, name: str) -> int | None:
    value = resp.headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
