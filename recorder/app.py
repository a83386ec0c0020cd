"""The recorder's HTTP side: webhooks in, rows out, its own metrics and health.

Status contract (Alertmanager retries 5xx, never 4xx): 2xx stored or a recognised duplicate;
400/401/403/413/422 bad input, with the reason in the body and nothing written; 503 when the
database is unavailable, with nothing half-written (each webhook is one transaction).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from common.build_info import build_info
from recorder.payloads import (
    PayloadError,
    parse_alertmanager,
    parse_github,
    parse_vercel,
)
from recorder.store import StoreUnavailable
from schema.rows import DeploymentEvent, LatestDeployment, Notification

log = logging.getLogger(__name__)
# `_created` series double every counter's output and no rule or dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

SOURCES = ("alertmanager", "heartbeat", "vercel", "github")
REASONS = (
    "invalid_json",
    "invalid_payload",
    "unsupported_version",
    "unauthorized",
    "invalid_signature",
    "too_large",
    "db_unavailable",
)


class Store(Protocol):
    latest: dict[str, LatestDeployment]
    pool: Any

    async def write_notification(self, n: Notification) -> int: ...
    async def write_deployment(
        self, provider: str, delivery: str, event_name: str, event: DeploymentEvent | None
    ) -> bool: ...
    async def migrations_at_head(self) -> bool: ...


class WebhookSecrets(Protocol):
    """What the handlers need of the secrets (recorder.config.Secrets in production)."""

    alertmanager_token: bytes
    vercel_secret: bytes | None
    github_secret: bytes | None


class Metrics:
    """Direct instrumentation of the recorder itself; every label child exists from the start."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "recorder_webhook_requests", "Webhook requests received.", ["source"], registry=registry
        )
        self.errors = Counter(
            "recorder_webhook_errors",
            "Webhook requests refused or failed, by reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.replays = Counter(
            "recorder_webhook_replays",
            "Deliveries already processed (same delivery id), acknowledged and skipped.",
            ["source"],
            registry=registry,
        )
        self.alerts = Counter(
            "recorder_alerts_written",
            "Alert instances upserted into infrastructure_alerts.",
            registry=registry,
        )
        self.notifications = Counter(
            "recorder_notifications_written",
            "Alertmanager notifications appended to the raw log.",
            registry=registry,
        )
        self.deployments = Counter(
            "recorder_deployment_events_written",
            "Deployment events applied to deployment_history.",
            ["provider"],
            registry=registry,
        )
        for s in SOURCES:
            self.requests.labels(s)
            self.replays.labels(s)
            for r in REASONS:
                self.errors.labels(s, r)
        for p in ("vercel", "github"):
            self.deployments.labels(p)
        self.heartbeat_at = 0.0


class StateCollector:
    """Pool statistics, deployment facts for deploy-aware alerts, and the Watchdog heartbeat.

    recorder_last_deployment_timestamp_seconds{environment="production"} 1.7e9
    recorder_production_deployment_info{branch="main",commit="de8b89f1…"} 1
    Bounded: one series per environment (three at most) and one info series.
    """

    def __init__(self, store: Store, metrics: Metrics, ready: Callable[[], bool]) -> None:
        self.store = store
        self.metrics = metrics
        self.ready = ready

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "recorder_up",
            "1 when the database is reachable and migrations are at head.",
            value=1.0 if self.ready() else 0.0,
        )
        ver, rev = build_info()
        info = InfoMetricFamily("recorder_build", "Version of the recorder.")
        info.add_metric([], {"version": ver, "revision": rev})
        yield info
        stats = self.store.pool.get_stats() if self.store.pool is not None else {}
        for key, help_ in (
            ("pool_size", "Connections in the pool (in use and idle)."),
            ("pool_available", "Idle connections in the pool."),
            ("requests_waiting", "Requests waiting for a connection."),
        ):
            yield GaugeMetricFamily(
                f"recorder_pool_{key.removeprefix('pool_')}", help_, value=stats.get(key, 0)
            )
        for key, help_ in (
            ("requests_num", "Connection requests served by the pool."),
            ("requests_errors", "Connection requests that failed (timeout or error)."),
            ("connections_errors", "Failed attempts to open a connection."),
        ):
            fam = GaugeMetricFamily  # pool counters reset with the pool; exported as gauges
            yield fam(
                f"recorder_pool_{key}", help_ + " Since the pool opened.", value=stats.get(key, 0)
            )
        last = GaugeMetricFamily(
            "recorder_last_deployment_timestamp_seconds",
            "When the latest successful deployment of each environment went live.",
            labels=["environment"],
        )
        prod = InfoMetricFamily(
            "recorder_production_deployment",
            "The latest successful production deployment.",
            labels=[],
        )
        for env, d in sorted(self.store.latest.items()):
            last.add_metric([env], d.at.timestamp())
            if env == "production":
                prod.add_metric([], {"commit": d.commit, "branch": d.branch})
        yield last
        yield prod
        yield GaugeMetricFamily(
            "recorder_heartbeat_last_timestamp_seconds",
            "When the Watchdog heartbeat last arrived from Alertmanager (0 = never since start).",
            value=self.metrics.heartbeat_at,
        )


STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
REGISTRY = web.AppKey("registry", CollectorRegistry)
SECRETS = web.AppKey("secrets", WebhookSecrets)
MAX_BODY = web.AppKey("max_body", int)
VERIFY_CODE = web.AppKey("verify_code", str)
READY = web.AppKey("ready", list)


def _reject(metrics: Metrics, source: str, reason: str, status: int, detail: str) -> web.Response:
    metrics.errors.labels(source, reason).inc()
    log.info("webhook refused", extra={"source": source, "reason": reason})
    return web.json_response({"error": reason, "detail": detail}, status=status)


async def _body(request: web.Request, source: str) -> bytes | web.Response:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _reject(
            request.app[METRICS],
            source,
            "too_large",
            413,
            f"body over {request.app[MAX_BODY]} bytes",
        )


def _bearer_ok(request: web.Request, token: bytes) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    # compare_digest: the time taken must not reveal how much of the token matched.
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token)


def _unavailable(metrics: Metrics, source: str) -> web.Response:
    metrics.errors.labels(source, "db_unavailable").inc()
    log.warning("database unavailable", extra={"source": source})
    return web.json_response(
        {"error": "db_unavailable", "detail": "database unavailable; retry"}, status=503
    )


async def alertmanager(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    m.requests.labels("alertmanager").inc()
    if not _bearer_ok(request, request.app[SECRETS].alertmanager_token):
        return _reject(m, "alertmanager", "unauthorized", 401, "missing or wrong bearer token")
    body = await _body(request, "alertmanager")
    if isinstance(body, web.Response):
        return body
    try:
        notification = parse_alertmanager(body)
    except PayloadError as exc:
        return _reject(m, "alertmanager", exc.reason, exc.status, exc.detail)
    try:
        written = await request.app[STORE].write_notification(notification)
    except StoreUnavailable:
        return _unavailable(m, "alertmanager")
    m.notifications.inc()
    m.alerts.inc(written)
    return web.json_response({"stored": written})


async def heartbeat(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    m.requests.labels("heartbeat").inc()
    if not _bearer_ok(request, request.app[SECRETS].alertmanager_token):
        return _reject(m, "heartbeat", "unauthorized", 401, "missing or wrong bearer token")
    m.heartbeat_at = time.time()
    return web.json_response({"ok": True})


def _signature_ok(
    secret: bytes | None, body: bytes, given: str, algo: str, prefix: str = ""
) -> bool:
    if secret is None or not given.startswith(prefix):
        return False
    want = hmac.new(secret, body, getattr(hashlib, algo)).hexdigest()
    return hmac.compare_digest(given.removeprefix(prefix).strip().lower(), want)


async def _deployment(
    request: web.Request, source: str, delivery: str, event_name: str, event: DeploymentEvent | None
) -> web.Response:
    m = request.app[METRICS]
    try:
        fresh = await request.app[STORE].write_deployment(source, delivery, event_name, event)
    except StoreUnavailable:
        return _unavailable(m, source)
    if not fresh:
        m.replays.labels(source).inc()
        return web.json_response({"status": "duplicate delivery ignored"})
    if event is not None:
        m.deployments.labels(source).inc()
    return web.json_response({"status": "recorded" if event else "ignored event type"})


async def vercel(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    m.requests.labels("vercel").inc()
    body = await _body(request, "vercel")
    if isinstance(body, web.Response):
        return body
    given = request.headers.get("x-vercel-signature", "")
    if not _signature_ok(request.app[SECRETS].vercel_secret, body, given, "sha1"):
        # Vercel's own sample answers a bad signature with exactly this.
        m.errors.labels("vercel", "invalid_signature").inc()
        return web.json_response(
            {"code": "invalid_signature", "error": "signature didn't match"}, status=403
        )
    try:
        delivery, kind, event = parse_vercel(body)
    except PayloadError as exc:
        return _reject(m, "vercel", exc.reason, exc.status, exc.detail)
    return await _deployment(request, "vercel", delivery, kind, event)


async def vercel_verify(_: web.Request) -> web.Response:
    # Vercel's endpoint check: answered with the x-vercel-verify header (set by middleware).
    return web.json_response({"ok": True})


async def github(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    m.requests.labels("github").inc()
    body = await _body(request, "github")
    if isinstance(body, web.Response):
        return body
    given = request.headers.get("X-Hub-Signature-256", "")
    if not given:
        return _reject(m, "github", "invalid_signature", 401, "X-Hub-Signature-256 missing")
    if not _signature_ok(request.app[SECRETS].github_secret, body, given, "sha256", "sha256="):
        return _reject(m, "github", "invalid_signature", 403, "X-Hub-Signature-256 does not match")
    event = request.headers.get("X-GitHub-Event", "")
    delivery = request.headers.get("X-GitHub-Delivery", "")
    if not event or not delivery:
        return _reject(
            m, "github", "invalid_payload", 400, "X-GitHub-Event and X-GitHub-Delivery are required"
        )
    if event == "ping":
        return web.json_response({"status": "pong"})
    try:
        parsed = parse_github(event, delivery, body, request.content_type)
    except PayloadError as exc:
        return _reject(m, "github", exc.reason, exc.status, exc.detail)
    return await _deployment(request, "github", delivery, event, parsed)


async def metrics(request: web.Request) -> web.Response:
    request.app[READY][0] = await request.app[STORE].migrations_at_head()
    return web.Response(
        body=generate_latest(request.app[REGISTRY]), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def healthy(_: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def ready(request: web.Request) -> web.Response:
    ok = await request.app[STORE].migrations_at_head()
    request.app[READY][0] = ok
    if ok:
        return web.Response(text="OK\n")
    return web.Response(status=503, text="database unreachable or migrations not at head\n")


def make_app(
    store: Store,
    secrets: WebhookSecrets,
    *,
    max_body_bytes: int,
    vercel_verify_code: str | None = None,
    on_startup: Callable[[web.Application], Awaitable[None]] | None = None,
) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes)
    registry = CollectorRegistry(auto_describe=False)
    m = Metrics(registry)
    app[STORE] = store
    app[METRICS] = m
    app[REGISTRY] = registry
    app[SECRETS] = secrets
    app[MAX_BODY] = max_body_bytes
    app[VERIFY_CODE] = vercel_verify_code or ""
    app[READY] = [False]
    registry.register(StateCollector(store, m, lambda: bool(app[READY][0])))

    @web.middleware
    async def verify_header(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        resp = await handler(request)
        if request.path.startswith("/webhooks/deployments/vercel") and request.app[VERIFY_CODE]:
            resp.headers["x-vercel-verify"] = request.app[VERIFY_CODE]
        return resp

    app.middlewares.append(verify_header)
    if on_startup is not None:

        async def ctx(app: web.Application) -> AsyncIterator[None]:
            await on_startup(app)
            yield

        app.cleanup_ctx.append(ctx)
    app.router.add_post("/webhooks/alertmanager", alertmanager)
    app.router.add_post("/webhooks/heartbeat", heartbeat)
    app.router.add_post("/webhooks/deployments/vercel", vercel)
    app.router.add_get("/webhooks/deployments/vercel", vercel_verify)
    app.router.add_post("/webhooks/deployments/github", github)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    return app
