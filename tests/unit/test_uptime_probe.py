"""Probes against real local servers: phases, status, body, redirects, TLS chain and headers."""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporters.uptime.probe import HttpSpec, TcpSpec, probe_http, probe_tcp
from fakes.platform import SECURITY_HEADERS

UA = "wsinfra-uptime/test"


def spec(url: str, **kw: object) -> HttpSpec:
    base: dict[str, object] = {
        "url": url,
        "method": "GET",
        "headers": (),
        "body": b"",
        "expect_status": ("2xx",),
        "body_match": None,
        "follow_redirects": True,
        "max_redirects": 5,
        "tls_verify": True,
        "max_body_bytes": 64 * 1024,
    }
    base.update(kw)
    return HttpSpec(**base)  # type: ignore[arg-type]


SEEN = web.AppKey("seen", list)


def make_app() -> web.Application:
    app = web.Application()
    seen: list[dict[str, str]] = []
    app[SEEN] = seen

    async def ok(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="hello WedSync", headers=SECURITY_HEADERS)

    async def bare(_: web.Request) -> web.Response:
        return web.Response(text="no headers here")

    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response(text="slow")

    async def hang(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="never")

    async def redirect(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound("/ok" if n == 0 else f"/redirect/{n - 1}")

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"chunk one ", b"chunk two ", b"needle"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def weak_hsts(_: web.Request) -> web.Response:
        return web.Response(
            text="x",
            headers={
                "Strict-Transport-Security": "max-age=600",
                "Content-Security-Policy": "default-src 'self'; frame-ancestors 'self'",
                "X-Content-Type-Options": "nosniff",
            },
        )

    app.router.add_get("/ok", ok)
    app.router.add_get("/bare", bare)
    app.router.add_get("/fail", fail)
    app.router.add_get("/slow", slow)
    app.router.add_get("/hang", hang)
    app.router.add_get("/redirect/{n}", redirect)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/weak-hsts", weak_hsts)
    return app


@pytest.fixture
async def server() -> TestServer:
    srv = TestServer(make_app(), host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


def url(srv: TestServer, path: str) -> str:
    return f"http://127.0.0.1:{srv.port}{path}"


async def test_success_with_phases_and_headers(server: TestServer) -> None:
    r = await probe_http(spec(url(server, "/ok"), body_match=re.compile(b"WedSync")), 5, UA)
    assert r.success, r.reason
    assert r.status_code == 200
    assert r.phases["connect"] > 0
    assert r.phases["processing"] > 0
    assert r.phases["tls"] == 0
    assert r.duration >= sum(r.phases.values()) - 1e-6
    assert r.security_headers == dict.fromkeys(r.security_headers or {}, True)
    assert r.hsts_max_age == 31536000
    sent = server.app[SEEN][-1]
    assert sent["User-Agent"] == UA
    assert sent["Connection"] == "close"


async def test_status_outside_expectation_fails_with_reason_status(server: TestServer) -> None:
    r = await probe_http(spec(url(server, "/fail")), 5, UA)
    assert not r.success
    assert r.reason == "status"
    assert r.status_code == 503
    ok = await probe_http(spec(url(server, "/fail"), expect_status=(503,)), 5, UA)
    assert ok.success


async def test_body_mismatch(server: TestServer) -> None:
    r = await probe_http(spec(url(server, "/bare"), body_match=re.compile(b"WedSync")), 5, UA)
    assert (r.success, r.reason) == (False, "body_mismatch")


async def test_chunked_body_is_decoded_before_matching(server: TestServer) -> None:
    r = await probe_http(spec(url(server, "/chunked"), body_match=re.compile(b"two needle")), 5, UA)
    assert r.success, r.reason


async def test_redirects_followed_and_limited(server: TestServer) -> None:
    r = await probe_http(spec(url(server, "/redirect/2")), 5, UA)
    assert r.success
    assert r.redirects == 3
    too_many = await probe_http(spec(url(server, "/redirect/2"), max_redirects=2), 5, UA)
    assert (too_many.success, too_many.reason) == (False, "redirects")
    not_followed = await probe_http(spec(url(server, "/redirect/0"), follow_redirects=False), 5, UA)
    assert (not_followed.success, not_followed.status_code) == (False, 302)


async def test_timeout_is_enforced(server: TestServer) -> None:
    started = time.perf_counter()
    r = await probe_http(spec(url(server, "/hang")), 0.5, UA)
    assert (r.success, r.reason) == (False, "timeout")
    assert time.perf_counter() - started < 2


async def test_slow_response_is_measured_as_processing(server: TestServer) -> None:
    r = await probe_http(spec(url(server, "/slow")), 5, UA)
    assert r.success
    assert r.phases["processing"] >= 0.29


async def test_connection_refused_is_reason_connect(unused_tcp_port: int) -> None:
    r = await probe_http(spec(f"http://127.0.0.1:{unused_tcp_port}/"), 2, UA)
    assert (r.success, r.reason) == (False, "connect")


async def test_unresolvable_host_is_reason_resolve() -> None:
    r = await probe_http(spec("http://no-such-host.invalid/"), 5, UA)
    assert (r.success, r.reason) == (False, "resolve")


async def test_frame_ancestors_counts_and_short_hsts_is_reported(server: TestServer) -> None:
    r = await probe_http(spec(url(server, "/weak-hsts")), 5, UA)
    assert r.security_headers is not None
    assert r.security_headers["frame_options"] is True
    assert r.hsts_max_age == 600
    bare = await probe_http(spec(url(server, "/bare")), 5, UA)
    assert bare.security_headers == {
        "strict_transport_security": False,
        "content_security_policy": False,
        "x_content_type_options": False,
        "frame_options": False,
    }
    assert bare.hsts_max_age is None


async def test_head_request_does_not_wait_for_a_body(server: TestServer) -> None:
    r = await probe_http(spec(url(server, "/ok"), method="HEAD"), 2, UA)
    assert r.success, r.reason


async def test_tcp_probe(server: TestServer, unused_tcp_port: int) -> None:
    ok = await probe_tcp(TcpSpec("127.0.0.1", server.port), 2)
    assert ok.success
    assert ok.phases["connect"] > 0
    bad = await probe_tcp(TcpSpec("127.0.0.1", unused_tcp_port), 2)
    assert (bad.success, bad.reason) == (False, "connect")


# --- TLS: a real handshake against a self-signed chain made with openssl ---


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "10",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return d / "cert.pem", d / "key.pem"


@pytest.fixture
async def tls_server(tls_files: tuple[Path, Path]) -> TestServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*map(str, tls_files))
    srv = TestServer(make_app(), host="127.0.0.1")
    await srv.start_server(ssl=ctx)
    yield srv
    await srv.close()


async def test_untrusted_certificate_fails_with_reason_tls(tls_server: TestServer) -> None:
    r = await probe_http(spec(f"https://127.0.0.1:{tls_server.port}/ok"), 5, UA)
    assert (r.success, r.reason) == (False, "tls")


async def test_tls_phase_and_chain_expiry(tls_server: TestServer) -> None:
    r = await probe_http(spec(f"https://127.0.0.1:{tls_server.port}/ok", tls_verify=False), 5, UA)
    assert r.success, r.reason
    assert r.phases["tls"] > 0
    assert r.tls_not_after is not None
    days_left = (r.tls_not_after - time.time()) / 86400
    assert 9 < days_left <= 10


async def test_expiry_is_the_earliest_in_the_presented_chain(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=tmp_path)

    # An intermediate/CA that expires (5 days) before the leaf it signed (10 days).
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "5",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    )
    run(
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "10",
        "-out",
        "leaf.pem",
    )
    (tmp_path / "chain.pem").write_text(
        (tmp_path / "leaf.pem").read_text() + (tmp_path / "ca.pem").read_text()
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tmp_path / "chain.pem"), str(tmp_path / "leaf.key"))
    srv = TestServer(make_app(), host="127.0.0.1")
    await srv.start_server(ssl=ctx)
    try:
        r = await probe_http(spec(f"https://127.0.0.1:{srv.port}/ok", tls_verify=False), 5, UA)
    finally:
        await srv.close()
    assert r.success, r.reason
    assert r.tls_not_after is not None
    assert 4 < (r.tls_not_after - time.time()) / 86400 <= 5
