"""What every exporter's HTTP side shares: the health answer and the landing page."""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web


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
