"""One probe of one target: HTTP(S) or TCP, with per-phase timings, TLS expiry and headers.

Each probe opens a fresh connection, as an uptime check must: a pooled connection would hide
DNS, connect and TLS trouble. The HTTP/1.1 exchange runs on an asyncio Protocol and llhttp (via
httptools) because a general-purpose client spends several times more CPU per probe, and a
probe's own cost bounds how many targets one exporter can watch (benchmarks/probe_throughput.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urljoin, urlsplit

import httptools

# Failure reasons are the only values of the `reason` label: keep this list closed.
REASONS: Final = (
    "resolve",
    "connect",
    "tls",
    "timeout",
    "protocol",
    "status",
    "body_mismatch",
    "redirects",
)
PHASES: Final = ("resolve", "connect", "tls", "processing", "transfer")
SECURITY_HEADERS: Final = (
    "strict_transport_security",
    "content_security_policy",
    "x_content_type_options",
    "frame_options",
)
_REDIRECTS: Final = frozenset((301, 302, 303, 307, 308))
_MAX_AGE = re.compile(r"max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


class ProbeFailure(Exception):
    def __init__(self, reason: str) -> None:
        assert reason in REASONS
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class ProbeResult:
    """Outcome of one probe; for failures the fields that were reached are still filled."""

    success: bool = False
    reason: str | None = None
    status_code: int = 0
    duration: float = 0.0
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    redirects: int = 0
    tls_not_after: float | None = None  # earliest notAfter in the presented chain (unix time)
    # None for TCP probes or when no response was read.
    security_headers: dict[str, bool] | None = None
    hsts_max_age: float | None = None
    finished_at: float = 0.0


@dataclass(frozen=True, slots=True)
class HttpSpec:
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expect_status: tuple[int | str, ...]
    body_match: re.Pattern[bytes] | None
    follow_redirects: bool
    max_redirects: int
    tls_verify: bool
    max_body_bytes: int


@dataclass(frozen=True, slots=True)
class TcpSpec:
    host: str
    port: int


class _Response(asyncio.Protocol):
    """Collects one HTTP response; `done` resolves when it is complete or the peer hangs up."""

    __slots__ = (
        "body",
        "done",
        "first_byte_at",
        "head_only",
        "headers",
        "headers_done",
        "limit",
        "parser",
        "status",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, head_only: bool) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[None] = loop.create_future()
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.limit = limit
        self.head_only = head_only
        self.headers_done = False
        self.first_byte_at = 0.0
        self.status = 0
        self.transport: asyncio.BaseTransport | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.first_byte_at:
            self.first_byte_at = time.perf_counter()
        if self.done.done():
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._finish(ProbeFailure("protocol"))

    def eof_received(self) -> bool | None:
        # Without Content-Length the body ends at EOF (we send Connection: close).
        if self.headers_done:
            self._finish(None)
        else:
            self._finish(ProbeFailure("protocol"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.headers_done:
            self._finish(None)
        else:
            self._finish(ProbeFailure("protocol"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        # Repeated headers: the first wins, which is what browsers do for these headers.
        self.headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self.parser.get_status_code()
        if self.head_only:
            self._finish(None)

    def on_body(self, body: bytes) -> None:
        room = self.limit - len(self.body)
        if room > 0:
            self.body += body[:room]
        if len(self.body) >= self.limit:
            # Enough to match against; do not download the rest of a large page.
            self._finish(None)

    def on_message_complete(self) -> None:
        self._finish(None)

    def _finish(self, exc: ProbeFailure | None) -> None:
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(exc)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int) -> str:
    if _is_ip(host):
        return host
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ProbeFailure("resolve") from exc
    if not infos:
        raise ProbeFailure("resolve")
    return str(infos[0][4][0])


def _earliest_not_after(transport: asyncio.BaseTransport) -> float | None:
    ssl_obj = transport.get_extra_info("ssl_object")
    if ssl_obj is None:
        return None
    # The chain as presented: an intermediate that expires first breaks clients just the same.
    # SSLObject grew a public get_unverified_chain() in 3.13; before that it is on _sslobj.
    getter = getattr(ssl_obj, "get_unverified_chain", None) or getattr(
        getattr(ssl_obj, "_sslobj", None), "get_unverified_chain", None
    )
    times: list[float] = []
    if getter is not None:
        for cert in getter() or ():
            info = cert.get_info() if hasattr(cert, "get_info") else None
            if info and info.get("notAfter"):
                times.append(ssl.cert_time_to_seconds(info["notAfter"]))
    if not times:
        peer = ssl_obj.getpeercert()
        if peer and peer.get("notAfter"):
            times.append(ssl.cert_time_to_seconds(str(peer["notAfter"])))
    return min(times) if times else None


def _status_ok(code: int, expect: tuple[int | str, ...]) -> bool:
    for item in expect:
        if isinstance(item, int):
            if code == item:
                return True
        elif str(code)[0] == item[0]:
            return True
    return False


def _security_headers(headers: dict[str, str]) -> tuple[dict[str, bool], float | None]:
    hsts = headers.get("strict-transport-security")
    csp = headers.get("content-security-policy", "")
    xfo = headers.get("x-frame-options", "").strip().upper()
    present = {
        "strict_transport_security": hsts is not None,
        "content_security_policy": bool(csp),
        "x_content_type_options": headers.get("x-content-type-options", "").strip().lower()
        == "nosniff",
        # Either header stops click-jacking; CSP frame-ancestors supersedes X-Frame-Options.
        "frame_options": xfo in ("DENY", "SAMEORIGIN") or "frame-ancestors" in csp.lower(),
    }
    max_age = None
    if hsts is not None:
        m = _MAX_AGE.search(hsts)
        max_age = float(m.group(1)) if m else 0.0
    return present, max_age


_CLIENT_CTX: dict[bool, ssl.SSLContext] = {}


def _ssl_context(verify: bool) -> ssl.SSLContext:
    ctx = _CLIENT_CTX.get(verify)
    if ctx is None:
        ctx = ssl.create_default_context()
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        _CLIENT_CTX[verify] = ctx
    return ctx


def build_request(method: str, url: str, spec: HttpSpec, user_agent: str) -> bytes:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"User-Agent: {user_agent}",
        "Accept: */*",
        "Accept-Encoding: identity",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in spec.headers]
    body = spec.body if method == spec.method else b""
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _http_hop(
    loop: asyncio.AbstractEventLoop,
    method: str,
    url: str,
    spec: HttpSpec,
    result: ProbeResult,
    user_agent: str,
) -> _Response:
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    phases = result.phases

    t0 = time.perf_counter()
    addr = await _resolve(loop, host, port)
    t1 = time.perf_counter()
    phases["resolve"] += t1 - t0

    resp = _Response(loop, spec.max_body_bytes, head_only=method == "HEAD")
    try:
        transport, _ = await loop.create_connection(lambda: resp, addr, port)
    except OSError as exc:
        raise ProbeFailure("connect") from exc
    t2 = time.perf_counter()
    phases["connect"] += t2 - t1
    try:
        if https:
            try:
                new = await loop.start_tls(
                    transport, resp, _ssl_context(spec.tls_verify), server_hostname=host
                )
            except (ssl.SSLError, ssl.CertificateError, ConnectionError, OSError) as exc:
                raise ProbeFailure("tls") from exc
            if new is None:
                raise ProbeFailure("tls")
            transport = new
            result.tls_not_after = _earliest_not_after(transport)
            t2b = time.perf_counter()
            phases["tls"] += t2b - t2
            t2 = t2b
        transport.write(build_request(method, url, spec, user_agent))
        await resp.done
        t3 = time.perf_counter()
        first = resp.first_byte_at or t3
        phases["processing"] += first - t2
        phases["transfer"] += t3 - first
    finally:
        # Settle the future first, so that the hang-up the close causes has nothing to report.
        if not resp.done.done():
            resp.done.cancel()
        transport.close()
    return resp


async def _timed(body: Callable[[ProbeResult], Awaitable[None]], timeout: float) -> ProbeResult:
    """Run one probe body under its deadline; a failure becomes a reason, never an exception."""
    result = ProbeResult()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await body(result)
        result.success = True
    except ProbeFailure as exc:
        result.reason = exc.reason
    except TimeoutError:
        result.reason = "timeout"
    result.duration = time.perf_counter() - started
    result.finished_at = time.time()
    return result


async def probe_http(spec: HttpSpec, timeout: float, user_agent: str) -> ProbeResult:
    loop = asyncio.get_running_loop()

    async def body(result: ProbeResult) -> None:
        method, url = spec.method, spec.url
        while True:
            resp = await _http_hop(loop, method, url, spec, result, user_agent)
            result.status_code = resp.status
            location = resp.headers.get("location")
            if not (spec.follow_redirects and resp.status in _REDIRECTS and location):
                break
            if result.redirects >= spec.max_redirects:
                raise ProbeFailure("redirects")
            result.redirects += 1
            url = urljoin(url, location)
            if urlsplit(url).scheme not in ("http", "https"):
                raise ProbeFailure("redirects")
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method = "GET"
        result.security_headers, result.hsts_max_age = _security_headers(resp.headers)
        if not _status_ok(resp.status, spec.expect_status):
            raise ProbeFailure("status")
        if spec.body_match is not None and not spec.body_match.search(resp.body):
            raise ProbeFailure("body_mismatch")

    return await _timed(body, timeout)


async def probe_tcp(spec: TcpSpec, timeout: float) -> ProbeResult:
    loop = asyncio.get_running_loop()

    async def body(result: ProbeResult) -> None:
        t0 = time.perf_counter()
        addr = await _resolve(loop, spec.host, spec.port)
        t1 = time.perf_counter()
        result.phases["resolve"] = t1 - t0
        try:
            transport, _ = await loop.create_connection(asyncio.Protocol, addr, spec.port)
        except OSError as exc:
            raise ProbeFailure("connect") from exc
        result.phases["connect"] = time.perf_counter() - t1
        transport.close()

    return await _timed(body, timeout)
