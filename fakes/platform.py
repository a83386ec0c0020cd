"""A stand-in for the platform (web pages and an API) whose health can be switched at run time.

Modes: ok, slow (every response delayed), error (HTTP 503), down (the port refuses connections).
Run: python -m fakes.platform serve --listen 127.0.0.1:9780 --control 127.0.0.1:9781
Switch: python -m fakes.platform set slow --delay 4 --control 127.0.0.1:9781
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import urllib.request
from dataclasses import dataclass

from aiohttp import web

MODES = ("ok", "slow", "error", "down")
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@dataclass(slots=True)
class PlatformState:
    mode: str = "ok"
    delay: float = 0.0


STATE = web.AppKey("state", PlatformState)


def make_public_app(state: PlatformState) -> web.Application:
    app = web.Application()
    app[STATE] = state

    @web.middleware
    async def faults(request: web.Request, handler):  # type: ignore[no-untyped-def]
        st = request.app[STATE]
        if st.mode == "slow" and st.delay > 0:
            await asyncio.sleep(st.delay)
        if st.mode == "error":
            return web.Response(
                status=503, text="Service Unavailable (demo fault)\n", headers=SECURITY_HEADERS
            )
        resp = await handler(request)
        resp.headers.update(SECURITY_HEADERS)
        return resp

    async def page(request: web.Request) -> web.Response:
        title = request.match_info.get("name", "home")
        return web.Response(
            text=f"<html><body><h1>WedSync demo: {title}</h1><p>status: ok</p></body></html>",
            content_type="text/html",
        )

    async def api_health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "database": "ok"})

    async def old(_: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/")

    app.middlewares.append(faults)
    app.router.add_get("/", page)
    app.router.add_get("/p/{name}", page)
    app.router.add_get("/api/health", api_health)
    app.router.add_get("/old-home", old)
    return app


class Platform:
    """Owns the public listener so that `down` can close the port and `ok` reopen it."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: tuple[str, int, ssl.SSLContext] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.tls = tls  # the same pages over HTTPS (a self-signed certificate in the demo)
        self.state = PlatformState()
        self._runner = web.AppRunner(make_public_app(self.state), access_log=None)
        self._site: web.TCPSite | None = None
        self._tls_site: web.TCPSite | None = None

    async def start(self) -> None:
        await self._runner.setup()
        await self._open()

    async def _open(self) -> None:
        if self._site is None:
            self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
            await self._site.start()
        if self.tls is not None and self._tls_site is None:
            host, port, ctx = self.tls
            self._tls_site = web.TCPSite(
                self._runner, host, port, ssl_context=ctx, reuse_address=True
            )
            await self._tls_site.start()

    async def _close(self) -> None:
        for site in (self._site, self._tls_site):
            if site is not None:
                await site.stop()
        self._site = self._tls_site = None

    async def set_mode(self, mode: str, delay: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.state.mode = mode
        self.state.delay = delay if mode == "slow" else 0.0
        if mode == "down":
            await self._close()
        else:
            await self._open()

    async def stop(self) -> None:
        await self._runner.cleanup()

    def control_app(self) -> web.Application:
        app = web.Application()

        async def get_mode(_: web.Request) -> web.Response:
            return web.json_response({"mode": self.state.mode, "delay": self.state.delay})

        async def put_mode(request: web.Request) -> web.Response:
            try:
                body = await request.json()
                await self.set_mode(str(body["mode"]), float(body.get("delay", 0.0)))
            except (ValueError, KeyError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response({"mode": self.state.mode, "delay": self.state.delay})

        app.router.add_get("/mode", get_mode)
        app.router.add_put("/mode", put_mode)
        return app


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def _serve(
    listen: tuple[str, int],
    control: tuple[str, int],
    tls: tuple[str, int, ssl.SSLContext] | None = None,
) -> None:
    platform = Platform(*listen, tls=tls)
    await platform.start()
    runner = web.AppRunner(platform.control_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, *control).start()
    print(
        f"DEMO platform on http://{listen[0]}:{listen[1]}/ (control on {control[0]}:{control[1]})",
        file=sys.stderr,
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await platform.stop()


def _addr(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def set_mode(control: str, mode: str, delay: float = 0.0) -> dict[str, object]:
    req = urllib.request.Request(
        f"http://{control}/mode",
        data=json.dumps({"mode": mode, "delay": delay}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback control URL
        return dict(json.loads(resp.read()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fakes.platform")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", default="127.0.0.1:9780")
    s.add_argument("--control", default="127.0.0.1:9781")
    s.add_argument(
        "--tls-listen", help="also serve the pages over HTTPS here (needs --tls-cert/--tls-key)"
    )
    s.add_argument("--tls-cert")
    s.add_argument("--tls-key")
    m = sub.add_parser("set")
    m.add_argument("mode", choices=MODES)
    m.add_argument("--delay", type=float, default=4.0, help="seconds, for slow")
    m.add_argument("--control", default="127.0.0.1:9781")
    args = p.parse_args(argv)
    if args.cmd == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            tls = None
            if args.tls_listen:
                tls = (*_addr(args.tls_listen), tls_context(args.tls_cert, args.tls_key))
            asyncio.run(_serve(_addr(args.listen), _addr(args.control), tls))
        return 0
    print(json.dumps(set_mode(args.control, args.mode, args.delay)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
