"""One HTTP client for every vendor API an exporter polls (httpx underneath).

What it gives each exporter alike: auth from secret files (re-read when the file changes, so a
rotated token needs no restart), one closed set of error reasons, rate-limit windows from
`Retry-After` and `X-RateLimit-*` (each vendor says "reset" differently: a parser per vendor),
an optional ceiling of our own per minute, and request and error counts for the exporter's
metrics. Errors never carry the token, a response body or a query string.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.config import read_secret_file

# The closed set of reasons a request fails for; they become a metric label.
REASONS = ("auth", "rate_limited", "server", "timeout", "connect", "malformed", "client")
# Worth trying again soon; the others need a person or the rate-limit window.
TRANSIENT = frozenset({"server", "timeout", "connect"})


class UpstreamError(Exception):
    """A failed request: `reason` is one of REASONS; `retry_at` (epoch seconds) when the vendor
    said when to come back."""

    def __init__(self, reason: str, detail: str, retry_at: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retry_at = retry_at


# --- rate-limit resets, per vendor ---------------------------------------------------------

# A parser turns the X-RateLimit-Reset header's value into an absolute epoch time.
ResetParser = Callable[[str, float], float | None]
# A vendor's own reading of a 429 answer (its headers or body, and now): when the endpoint may
# be asked again, as an absolute epoch time; None leaves it to Retry-After, the reset header
# and `default_block`.
LimitedParser = Callable[[httpx.Response, float], float | None]


def reset_epoch_seconds(value: str, now: float) -> float | None:
    """Vercel, GitHub: the window resets at this Unix time."""
    try:
        return float(int(value.strip()))
    except ValueError:
        return None


def reset_delta_seconds(value: str, now: float) -> float | None:
    """Supabase, OpenAI-style: seconds left in the window ("60", "1.5s", "6m0s" are accepted)."""
    text = value.strip().lower()
    total, num = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    try:
        for ch in text:
            if ch.isdigit() or ch == ".":
                num += ch
            elif ch in units and num:
                total += float(num) * units[ch]
                num = ""
            else:
                return None
        if num:
            total += float(num)
    except ValueError:
        return None
    return now + total


def retry_after(value: str, now: float) -> float | None:
    """RFC 9110 Retry-After: delay-seconds or an HTTP date."""
    text = value.strip()
    if text.isdigit():
        return now + float(text)
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


# --- auth from files -----------------------------------------------------------------------


class SecretFileAuth(httpx.Auth):
    """Bearer (one file) or basic (user and password files) auth, re-read when a file changes."""

    def __init__(self, *, bearer: Path | None = None, basic: tuple[Path, Path] | None = None):
        if (bearer is None) == (basic is None):
            raise ValueError("give exactly one of bearer or basic")
        self.bearer = bearer
        self.basic = basic
        self._cache: dict[Path, tuple[tuple[int, int, int], str]] = {}

    def _read(self, path: Path) -> str:
        st = os.stat(path)
        # A rotation by rename (a new inode) or a rewrite within the clock's resolution (a new
        # size) is noticed as well as a new modification time.
        key = (st.st_mtime_ns, st.st_ino, st.st_size)
        have = self._cache.get(path)
        if have is None or have[0] != key:
            have = (key, read_secret_file(path))
            self._cache[path] = have
        return have[1]

    def header(self) -> str:
        if self.bearer is not None:
            return f"Bearer {self._read(self.bearer)}"
        assert self.basic is not None
        user, password = (self._read(p) for p in self.basic)
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.header()
        yield request


class StaticBearer(httpx.Auth):
    """A token already read (tests, and configs that hand the exporter its secrets up front)."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


# --- the client ----------------------------------------------------------------------------


@dataclass(slots=True)
class Stats:
    requests: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    limit_remaining: dict[str, int] = field(default_factory=dict)
    limit_reset: dict[str, float] = field(default_factory=dict)
    waited_seconds: float = 0.0


class Upstream:
    """GET JSON (or a stream) from one vendor API; `endpoint` names a rate-limit bucket and the
    metric label (a bounded name such as "deployments", never a path with ids in it)."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None,
        timeout: float,
        user_agent: str,
        reset: ResetParser = reset_epoch_seconds,
        max_requests_per_minute: int | None = None,
        default_block: float = 60.0,
        max_block: float = 600.0,
        max_wait: float = 0.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
        headers: Mapping[str, str] | None = None,
        limited_until: LimitedParser | None = None,
    ) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url,
            auth=auth,
            headers={"User-Agent": user_agent, **(headers or {})},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )
        self.reset = reset
        self.limited_until = limited_until
        self.max_per_minute = max_requests_per_minute
        # How long an endpoint is left alone after a 429 that says nothing, and at most.
        self.default_block = default_block
        self.max_block = max_block
        # Waits up to this long inside a request for a window to open; longer gives up.
        self.max_wait = max_wait
        self.clock = clock
        self.sleep = sleep
        self.stats = Stats()
        self.blocked_until: dict[str, float] = {}
        self._sent: collections.deque[float] = collections.deque()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _pace(self, endpoint: str) -> None:
        now = self.clock()
        until = self.blocked_until.get(endpoint, 0.0)
        if self.max_per_minute is not None:
            while self._sent and self._sent[0] <= now - 60:
                self._sent.popleft()
            if len(self._sent) >= self.max_per_minute:
                until = max(until, self._sent[0] + 60)
        if until > now:
            wait = until - now
            if wait > self.max_wait:
                self.stats.errors["rate_limited"] += 1
                raise UpstreamError("rate_limited", f"{endpoint} blocked for {wait:.0f}s", until)
            self.stats.waited_seconds += wait
            await self.sleep(wait)
        if self.max_per_minute is not None:
            self._sent.append(self.clock())

    @contextmanager
    def _transport_errors(self, endpoint: str, code: str, timeout_detail: str) -> Iterator[None]:
        """A timeout or a broken connection as UpstreamError, counted under `code`."""
        try:
            yield
        except httpx.TimeoutException:
            self._count(endpoint, code, "timeout")
            raise UpstreamError("timeout", f"{endpoint}: {timeout_detail}") from None
        except httpx.TransportError as exc:
            self._count(endpoint, code, "connect")
            raise UpstreamError("connect", f"{endpoint}: {type(exc).__name__}") from None

    def _count(self, endpoint: str, code: str, reason: str | None) -> None:
        self.stats.requests[(endpoint, code)] += 1
        if reason:
            self.stats.errors[reason] += 1

    def _limits(self, endpoint: str, resp: httpx.Response) -> None:
        now = self.clock()
        remaining = _int(resp.headers.get("X-RateLimit-Remaining"))
        raw_reset = resp.headers.get("X-RateLimit-Reset")
        reset = self.reset(raw_reset, now) if raw_reset is not None else None
        if remaining is not None:
            self.stats.limit_remaining[endpoint] = remaining
        if reset is not None:
            self.stats.limit_reset[endpoint] = reset
        block: float | None = None
        if resp.status_code == 429:
            block = self.limited_until(resp, now) if self.limited_until else None
            if block is None:
                ra = resp.headers.get("Retry-After")
                block = (retry_after(ra, now) if ra else None) or reset or now + self.default_block
        elif remaining == 0:
            block = reset or now + self.default_block
        if block is not None:
            # A reset far away (clock skew, a day-long limit) is re-checked, not trusted blindly.
            self.blocked_until[endpoint] = min(max(block, now), now + self.max_block)

    def _classify(self, endpoint: str, resp: httpx.Response) -> None:
        code = resp.status_code
        if code == 200:
            return
        reason = (
            "rate_limited"
            if code == 429
            else "auth"
            if code in (401, 403)
            else "server"
            if code >= 500
            else "client"
        )
        self._count(endpoint, str(code), reason)
        retry_at = self.blocked_until.get(endpoint) if reason == "rate_limited" else None
        raise UpstreamError(reason, f"{endpoint}: HTTP {code}{_vendor_code(resp)}", retry_at)

    async def get_json(
        self, endpoint: str, path: str, params: Any = None, headers: Mapping[str, str] | None = None
    ) -> Any:
        """GET and decode JSON; raises UpstreamError with one of REASONS."""
        await self._pace(endpoint)
        with self._transport_errors(endpoint, "error", "no answer in time"):
            resp = await self.client.get(path, params=params, headers=headers)
        self._limits(endpoint, resp)
        self._classify(endpoint, resp)
        try:
            doc = resp.json()
        except ValueError:
            self._count(endpoint, "200", "malformed")
            raise UpstreamError("malformed", f"{endpoint}: body is not JSON") from None
        self._count(endpoint, "200", None)
        return doc

    @asynccontextmanager
    async def stream(
        self, endpoint: str, path: str, params: Any = None, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """GET a body to read in chunks (a large export); a failure mid-stream is `connect`."""
        await self._pace(endpoint)
        with self._transport_errors(endpoint, "error", "no answer in time"):
            async with self.client.stream("GET", path, params=params, headers=headers) as resp:
                self._limits(endpoint, resp)
                if resp.status_code != 200:
                    await resp.aread()
                self._classify(endpoint, resp)
                with self._transport_errors(endpoint, "200", "stream stalled"):
                    yield resp
                self._count(endpoint, "200", None)

    def metrics(self, prefix: str, what: str) -> list[Metric]:
        """`<prefix>_requests_total{endpoint,code}`, `<prefix>_errors_total{reason}` (every
        reason, zeros included) and `<prefix>_rate_limit_remaining{endpoint}`."""
        requests = CounterMetricFamily(
            f"{prefix}_requests",
            f"Requests sent to {what}, by endpoint and HTTP status.",
            labels=["endpoint", "code"],
        )
        for (endpoint, code), n in sorted(self.stats.requests.items()):
            requests.add_metric([endpoint, code], n)
        errors = CounterMetricFamily(
            f"{prefix}_errors", f"Failed requests to {what}, by reason.", labels=["reason"]
        )
        for reason in REASONS:
            errors.add_metric([reason], self.stats.errors.get(reason, 0))
        remaining = GaugeMetricFamily(
            f"{prefix}_rate_limit_remaining",
            f"Requests left in {what}'s current rate-limit window, as it last said.",
            labels=["endpoint"],
        )
        for endpoint, n in sorted(self.stats.limit_remaining.items()):
            remaining.add_metric([endpoint], n)
        return [requests, errors, remaining]


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _vendor_code(resp: httpx.Response) -> str:
    """The vendor's error code (never its message, which may echo request details)."""
    try:
        doc = resp.json()
    except (ValueError, httpx.ResponseNotRead):
        return ""
    err = doc.get("error") if isinstance(doc, dict) else None
    code = (err.get("code") or err.get("type")) if isinstance(err, dict) else None
    return f" ({str(code)[:40]})" if code else ""
