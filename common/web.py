"""What every exporter's HTTP side shares: the health answer and the landing page."""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator, Callable, Coroutine
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest


async def healthy(_: web.Request) -> web.Response:
    return web.Response(text="OK\n")


def landing_page(name: str, sections: list[tuple[str, list[str]]]) -> web.Response:
    """The exporter's name, a link to /metrics, then each section: a line and its list (escaped)."""
    title = f"wsinfra {name} exporter"
    body = "".join(
        f"<p>{html.escape(line)}</p>"
        + (f"<ul>{''.join(f'<li>{html.escape(i)}</li>' for i in items)}</ul>" if items else "")
        for line, items in sections
    )
    page = (
        f"<html><head><title>{title}</title></head><body>"
        f"<h1>{title}</h1><p><a href='/metrics'>Metrics</a></p>{body}</body></html>"
    )
    return web.Response(text=page, content_type="text/html")


def background_tasks(
    *starts: Callable[[], Coroutine[Any, Any, None]],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context (app.cleanup_ctx) that runs these coroutines while the app serves,
    then cancels them and waits for them to end (so nothing outlives the app)."""

    async def ctx(_: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(start()) for start in starts]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    return ctx


class _QuietRequestHandler(RequestHandler):
    """aiohttp's connection handler, but a request it cannot parse (a line or header over its
    limits, a bad method or version) is refused without repeating it: aiohttp's own answer
    quotes the offending bytes (an Authorization header's token among them) and logs them with
    a traceback. Here the answer is JSON naming only the status, and the log one line naming
    only the error's type. Server errors (500) keep aiohttp's handling."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        self.logger.warning(
            "malformed HTTP request refused",
            extra={"status": status, "error": type(exc).__name__ if exc else "none"},
        )
        if request.writer.output_size > 0:
            raise ConnectionError("answer already started; closing the connection")
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
        resp = web.json_response(
            {"error": "invalid_request", "reason": f"malformed HTTP request ({status} {phrase})"},
            status=status,
        )
        resp.force_close()
        return resp


class _QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class QuietAppRunner(web.AppRunner):
    """web.AppRunner whose connections refuse unparseable requests quietly (_QuietRequestHandler)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The same server, answering with the quiet handler (a subclass without state of its own).
        server.__class__ = _QuietServer
        return server
