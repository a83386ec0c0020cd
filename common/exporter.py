"""The HTTP side every exporter shares: routes, health, background tasks, and /metrics rendered
from an immutable snapshot through a fresh registry per scrape, with the same self-metrics for
every exporter.

An exporter is config + vendor adapter + pure collector. It gives this module:
- `snapshot()`: an immutable picture of what it knows, taken on the event loop (a copy of
  state the loop keeps, or a read of a cheap source on scrape);
- `collect(snapshot)`: pure rendering of that picture into metric families;
- `loops()`: its background refresh loops (common.refresh), run and reported here alike.
Every scrape then serves `<ns>_build_info`, `<ns>_up`, `<ns>_scrape_duration_seconds`, and per
refresh loop `<prefix>_up`, `_last_success_timestamp_seconds`, `_refresh_duration_seconds` and
`_refresh_errors_total{reason}`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from common.build_info import build_info
from common.refresh import RefreshLoop
from common.web import background_tasks, healthy, landing_page

S = TypeVar("S")


class Exporter(Protocol[S]):
    namespace: str  # metric prefix: "uptime", "vercel", "supabase", "billing"
    title: str  # for the landing page: "uptime", "Vercel", …

    async def snapshot(self) -> S: ...
    def collect(self, snapshot: S) -> Iterable[Metric]: ...
    # True/False, or per label values (e.g. one per database) with `up_labels()` naming them.
    def up(self, snapshot: S) -> bool | Mapping[tuple[str, ...], bool]: ...
    def up_labels(self) -> tuple[str, ...]: ...
    def up_help(self) -> str: ...
    def loops(self) -> Mapping[str, tuple[RefreshLoop[Any], str]]: ...
    def background(self) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]: ...
    def ready(self) -> bool: ...
    def landing(self) -> list[tuple[str, list[str]]]: ...
    async def aclose(self) -> None: ...


class ExporterDefaults:
    """What most exporters answer alike; an exporter overrides what it does differently."""

    def up_labels(self) -> tuple[str, ...]:
        return ()

    def loops(self) -> Mapping[str, tuple[RefreshLoop[Any], str]]:
        return {}

    def background(self) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
        return ()

    def ready(self) -> bool:
        # Ready as soon as it serves: a source being down is a metric (<ns>_up), not a restart.
        return True

    def landing(self) -> list[tuple[str, list[str]]]:
        return []

    async def aclose(self) -> None:
        return None


class _Scrape:
    """A registry's only collector: renders one snapshot, once."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self.families


def self_metrics(
    namespace: str,
    up: bool | Mapping[tuple[str, ...], bool],
    up_help: str,
    up_labels: tuple[str, ...] = (),
) -> list[Metric]:
    ver, rev = build_info()
    info = InfoMetricFamily(f"{namespace}_build", f"Version of the wsinfra {namespace} exporter.")
    info.add_metric([], {"version": ver, "revision": rev})
    if isinstance(up, bool):
        return [info, GaugeMetricFamily(f"{namespace}_up", up_help, value=1.0 if up else 0.0)]
    family = GaugeMetricFamily(f"{namespace}_up", up_help, labels=list(up_labels))
    for values, ok in up.items():
        family.add_metric(list(values), 1.0 if ok else 0.0)
    return [info, family]


def render(
    exporter: Exporter[S], snapshot: S, loop_families: list[Metric], started: float
) -> bytes:
    """The exposition text of one scrape (pure but for the clock: safe off the event loop)."""
    families = [
        *self_metrics(
            exporter.namespace, exporter.up(snapshot), exporter.up_help(), exporter.up_labels()
        ),
        *exporter.collect(snapshot),
        *loop_families,
    ]
    families.append(
        GaugeMetricFamily(
            f"{exporter.namespace}_scrape_duration_seconds",
            "Time this exporter took to gather and render this scrape's metrics.",
            value=time.perf_counter() - started,
        )
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(families))
    return generate_latest(registry)


EXPORTER: web.AppKey[Any] = web.AppKey("exporter", object)


def make_app(
    exporter: Exporter[Any],
    *,
    routes: Sequence[web.RouteDef] = (),
    render_in_thread: bool = False,
    client_max_size: int = 1024**2,
) -> web.Application:
    """`render_in_thread`: render a large exposition off the event loop, so probes or drains in
    flight are not stalled by it (the snapshot is immutable, so that is safe)."""
    app = web.Application(client_max_size=client_max_size)
    app[EXPORTER] = exporter

    async def metrics(_: web.Request) -> web.Response:
        started = time.perf_counter()
        snapshot = await exporter.snapshot()
        # The loops' figures are read here, on the loop that changes them.
        loop_families = [
            fam
            for prefix, (loop, what) in exporter.loops().items()
            for fam in loop.metrics(prefix, what)
        ]
        if render_in_thread:
            body = await asyncio.get_running_loop().run_in_executor(
                None, render, exporter, snapshot, loop_families, started
            )
        else:
            body = render(exporter, snapshot, loop_families, started)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def index(_: web.Request) -> web.Response:
        return landing_page(exporter.title, exporter.landing())

    async def ready(_: web.Request) -> web.Response:
        if exporter.ready():
            return web.Response(text="OK\n")
        return web.Response(status=503, text="not ready\n")

    async def close(_: web.Application) -> AsyncIterator[None]:
        yield
        await exporter.aclose()

    # Registered first, so it runs last: the tasks are stopped before the exporter closes.
    app.cleanup_ctx.append(close)
    app.cleanup_ctx.append(
        background_tasks(
            *(loop.run for loop, _ in exporter.loops().values()), *exporter.background()
        )
    )
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_routes(routes)
    return app
