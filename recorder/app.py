"""The recorder's HTTP side: webhooks in, rows out, its own metrics and health.

Status contract (Alertmanager retries 5xx, never 4xx): 2xx stored, journaled, or a recognised
duplicate; 400/401/403/413/415/422 bad input, with the reason in the body and nothing written.
While the database is unavailable a valid webhook is appended to the durable journal (fsync, then
200) and applied later in order; 503 only when the journal is full or its disk fails (or, with no
journal configured, when the database is down). An Alertmanager notification with some unstorable
alerts stores the others and dead-letters the bad ones with their reasons (200).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from common import runbook_pages
from common.build_info import build_info
from common.ingress import BadRequest, bearer_ok, header_bytes, require_content_type, signature_ok
from common.web import background_tasks
from recorder.applier import Applier
from recorder.journal import Journal, JournalFull, JournalUnavailable, Record
from recorder.payloads import (
    parse_alertmanager,
    parse_github,
    parse_vercel,
)
from recorder.store import StoreRefused, StoreUnavailable, Write
from schema.rows import DeploymentEvent, LatestDeployment, Notification

log = logging.getLogger(__name__)
# `_created` series double every counter's output and no rule or dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

SOURCES = ("alertmanager", "heartbeat", "vercel", "github")
REASONS = (
    "invalid_json",
    "invalid_payload",
    "unsupported_version",
    "unsupported_media_type",
    "unauthorized",
    "invalid_signature",
    "too_large",
    "db_unavailable",
    "db_refused",
    "journal_full",
    "journal_unavailable",
)
DEAD_LETTER_REASONS = ("invalid_payload", "db_refused")


class Store(Protocol):
    latest: dict[str, LatestDeployment]
    pool: Any

    async def write_notification(self, n: Notification) -> int: ...
    async def write_deployment(
        self, provider: str, delivery: str, event_name: str, event: DeploymentEvent | None
    ) -> bool: ...
    async def migrations_at_head(self) -> bool: ...
    async def load_latest(self) -> None: ...
    async def apply_journaled(self, journal_id: str, seq: int, write: Write) -> bool: ...
    def notification_writer(self, n: Notification) -> Write: ...
    def deployment_writer(
        self, provider: str, delivery: str, event_name: str, event: DeploymentEvent | None
    ) -> Write: ...


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
        self.dead_letters = Counter(
            "recorder_alerts_dead_lettered",
            "Alerts of a notification that could not be stored, kept in alert_dead_letters.",
            ["reason"],
            registry=registry,
        )
        self.journaled = Counter(
            "recorder_journal_appended",
            "Webhooks appended to the local journal because the database was unavailable "
            "(or the journal was not yet empty).",
            ["source"],
            registry=registry,
        )
        for r in DEAD_LETTER_REASONS:
            self.dead_letters.labels(r)
        for s in SOURCES:
            self.journaled.labels(s)
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

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        ready: Callable[[], bool],
        journal: Journal | None = None,
        applier: Applier | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.ready = ready
        self.journal = journal
        self.applier = applier

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
        if self.journal is not None:
            yield from self._journal(self.journal)

    def _journal(self, j: Journal) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "recorder_journal_records",
            "Accepted webhooks in the local journal, not yet applied to the database.",
            value=j.pending,
        )
        yield GaugeMetricFamily(
            "recorder_journal_bytes", "Bytes the journal holds on disk.", value=j.bytes
        )
        yield GaugeMetricFamily(
            "recorder_journal_capacity_bytes",
            "The journal's size limit; at it, webhooks are answered 503.",
            value=j.max_bytes,
        )
        oldest = j.oldest_received_at()
        yield GaugeMetricFamily(
            "recorder_journal_oldest_record_age_seconds",
            "Age of the oldest record not yet applied (0 when the journal is empty).",
            value=max(time.time() - oldest, 0.0) if oldest else 0.0,
        )
        yield CounterMetricFamily(
            "recorder_journal_torn_records",
            "Torn records (never acknowledged) cut off the journal's end at start.",
            value=j.torn_records,
        )
        a = self.applier
        if a is None:
            return
        yield CounterMetricFamily(
            "recorder_journal_applied",
            "Journal records applied to the database.",
            value=a.applied,
        )
        yield CounterMetricFamily(
            "recorder_journal_replayed",
            "Journal records found already applied (a restart after the commit) and skipped.",
            value=a.replayed,
        )
        dropped = CounterMetricFamily(
            "recorder_journal_dropped",
            "Journal records that can never be applied (unreadable, or refused by the database).",
            labels=["reason"],
        )
        for reason, n in sorted(a.dropped.items()):
            dropped.add_metric([reason], n)
        yield dropped
        yield CounterMetricFamily(
            "recorder_journal_apply_failures",
            "Attempts to apply the journal that failed because the database was unavailable.",
            value=a.failures,
        )


STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
REGISTRY = web.AppKey("registry", CollectorRegistry)
SECRETS = web.AppKey("secrets", WebhookSecrets)
MAX_BODY = web.AppKey("max_body", int)
VERIFY_CODE = web.AppKey("verify_code", str)
READY = web.AppKey("ready", list)
JOURNAL = web.AppKey("journal", Journal)
APPLIER = web.AppKey("applier", Applier)


def _reject(metrics: Metrics, source: str, reason: str, status: int, detail: str) -> web.Response:
    metrics.errors.labels(source, reason).inc()
    log.info("webhook refused", extra={"source": source, "reason": reason})
    return web.json_response({"error": reason, "detail": detail}, status=status)


async def _body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest("too_large", f"body over {request.app[MAX_BODY]} bytes", 413) from None


def _unavailable(metrics: Metrics, source: str, reason: str, detail: str) -> web.Response:
    metrics.errors.labels(source, reason).inc()
    log.warning("webhook not accepted", extra={"source": source, "reason": reason})
    return web.json_response({"error": reason, "detail": detail}, status=503)


async def _write_or_journal(
    request: web.Request,
    source: str,
    direct: Callable[[], Awaitable[web.Response]],
    meta: dict[str, Any],
    body: bytes,
) -> web.Response:
    """Write now while the journal is empty; otherwise, or when the database is unavailable,
    append to the journal (in order behind what is waiting) and let the applier write it."""
    m = request.app[METRICS]
    journal = request.app.get(JOURNAL)
    if journal is None or not journal.pending:
        try:
            return await direct()
        except StoreUnavailable:
            if journal is None:
                return _unavailable(m, source, "db_unavailable", "database unavailable; retry")
            m.errors.labels(source, "db_unavailable").inc()
        except StoreRefused as exc:
            return _reject(m, source, "db_refused", 422, f"the database refused the data: {exc}")
    try:
        seq = await journal.append(source, meta, body)
    except JournalFull as exc:
        return _unavailable(m, source, "journal_full", f"{exc}; retry")
    except JournalUnavailable as exc:
        return _unavailable(m, source, "journal_unavailable", f"journal write failed: {exc}")
    m.journaled.labels(source).inc()
    request.app[APPLIER].wake()
    return web.json_response({"status": "journaled", "seq": seq})


def _notification_response(m: Metrics, n: Notification, written: int) -> web.Response:
    m.notifications.inc()
    m.alerts.inc(written)
    dead = len(n.alerts) - written + len(n.rejected)
    for r in n.rejected:
        m.dead_letters.labels(r.reason).inc()
    if len(n.alerts) > written:
        m.dead_letters.labels("db_refused").inc(len(n.alerts) - written)
    return web.json_response({"stored": written, "dead_lettered": dead})


async def alertmanager(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    m.requests.labels("alertmanager").inc()
    if not bearer_ok(request, request.app[SECRETS].alertmanager_token):
        return _reject(m, "alertmanager", "unauthorized", 401, "missing or wrong bearer token")
    require_content_type(request, "application/json")
    body = await _body(request)
    notification = parse_alertmanager(body)
    store = request.app[STORE]

    async def direct() -> web.Response:
        written = await store.write_notification(notification)
        return _notification_response(m, notification, written)

    return await _write_or_journal(request, "alertmanager", direct, {}, body)


async def heartbeat(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    m.requests.labels("heartbeat").inc()
    if not bearer_ok(request, request.app[SECRETS].alertmanager_token):
        return _reject(m, "heartbeat", "unauthorized", 401, "missing or wrong bearer token")
    m.heartbeat_at = time.time()
    return web.json_response({"ok": True})


async def _deployment(
    request: web.Request,
    source: str,
    delivery: str,
    event_name: str,
    event: DeploymentEvent | None,
    meta: dict[str, Any],
    body: bytes,
) -> web.Response:
    m = request.app[METRICS]

    async def direct() -> web.Response:
        fresh = await request.app[STORE].write_deployment(source, delivery, event_name, event)
        if not fresh:
            m.replays.labels(source).inc()
            return web.json_response({"status": "duplicate delivery ignored"})
        if event is not None:
            m.deployments.labels(source).inc()
        return web.json_response({"status": "recorded" if event else "ignored event type"})

    return await _write_or_journal(request, source, direct, meta, body)


async def vercel(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    m.requests.labels("vercel").inc()
    secret = request.app[SECRETS].vercel_secret
    given = header_bytes(request, "x-vercel-signature")
    if secret is None or not given:
        # Refused before the body is read: an unsigned post costs us nothing.
        m.errors.labels("vercel", "invalid_signature").inc()
        return web.json_response(
            {"code": "invalid_signature", "error": "signature didn't match"}, status=403
        )
    body = await _body(request)
    if not signature_ok(secret, body, given, "sha1"):
        # Vercel's own sample answers a bad signature with exactly this.
        m.errors.labels("vercel", "invalid_signature").inc()
        return web.json_response(
            {"code": "invalid_signature", "error": "signature didn't match"}, status=403
        )
    require_content_type(request, "application/json")
    delivery, kind, event = parse_vercel(body)
    return await _deployment(request, "vercel", delivery, kind, event, {}, body)


async def vercel_verify(_: web.Request) -> web.Response:
    # Vercel's endpoint check: answered with the x-vercel-verify header (set by middleware).
    return web.json_response({"ok": True})


async def github(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    m.requests.labels("github").inc()
    given = header_bytes(request, "X-Hub-Signature-256")
    if not given:
        return _reject(m, "github", "invalid_signature", 401, "X-Hub-Signature-256 missing")
    secret = request.app[SECRETS].github_secret
    if secret is None:
        return _reject(m, "github", "invalid_signature", 403, "X-Hub-Signature-256 does not match")
    body = await _body(request)
    if not signature_ok(secret, body, given, "sha256", b"sha256="):
        return _reject(m, "github", "invalid_signature", 403, "X-Hub-Signature-256 does not match")
    event = header_bytes(request, "X-GitHub-Event").decode("ascii", "replace")
    delivery = header_bytes(request, "X-GitHub-Delivery").decode("ascii", "replace")
    if not event or not delivery or len(delivery) > 200 or "\ufffd" in event + delivery:
        return _reject(
            m,
            "github",
            "invalid_payload",
            400,
            "X-GitHub-Event and X-GitHub-Delivery are required (ASCII, delivery up to 200 characters)",
        )
    if event == "ping":
        return web.json_response({"status": "pong"})
    require_content_type(request, "application/json", "application/x-www-form-urlencoded")
    parsed = parse_github(event, delivery, body, request.content_type)
    meta = {"event": event, "delivery": delivery, "content_type": request.content_type}
    return await _deployment(request, "github", delivery, event, parsed, meta, body)


def journal_writer(store: Store) -> Callable[[Record], Write]:
    """How a journal record becomes its writes: parsed again by the same pure parsers."""

    def writer(record: Record) -> Write:
        try:
            if record.kind == "alertmanager":
                return store.notification_writer(parse_alertmanager(record.body))
            if record.kind == "vercel":
                delivery, kind, event = parse_vercel(record.body)
                return store.deployment_writer("vercel", delivery, kind, event)
            if record.kind == "github":
                meta = record.meta
                event = parse_github(
                    meta["event"], meta["delivery"], record.body, meta["content_type"]
                )
                return store.deployment_writer("github", meta["delivery"], meta["event"], event)
        except (BadRequest, KeyError) as exc:
            raise ValueError(f"{record.kind} record {record.seq}: {exc}") from None
        raise ValueError(f"unknown record kind {record.kind!r}")

    return writer


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


_SOURCE_BY_PATH = {
    "/webhooks/alertmanager": "alertmanager",
    "/webhooks/heartbeat": "heartbeat",
    "/webhooks/deployments/vercel": "vercel",
    "/webhooks/deployments/github": "github",
}


async def _load_latest_until_done(store: Store, max_delay: float = 30.0) -> None:
    """The deploy summary is loaded at start even when the database comes up after us."""
    delay = 0.5
    while True:
        try:
            await store.load_latest()
            return
        except (StoreUnavailable, StoreRefused):
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


def make_app(
    store: Store,
    secrets: WebhookSecrets,
    *,
    max_body_bytes: int,
    vercel_verify_code: str | None = None,
    on_startup: Callable[[web.Application], Awaitable[None]] | None = None,
    journal: Journal | None = None,
    runbooks: Path = runbook_pages.DEFAULT_DIRECTORY,
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
    applier = None
    if journal is not None:
        applier = Applier(journal, store, journal_writer(store))
        app[JOURNAL] = journal
        app[APPLIER] = applier
    registry.register(
        StateCollector(store, m, lambda: bool(app[READY][0]), journal=journal, applier=applier)
    )

    @web.middleware
    async def bad_request(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadRequest as exc:
            source = _SOURCE_BY_PATH.get(request.path, "other")
            return _reject(m, source, exc.reason, exc.status, exc.detail)

    @web.middleware
    async def verify_header(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        resp = await handler(request)
        if request.path.startswith("/webhooks/deployments/vercel") and request.app[VERIFY_CODE]:
            resp.headers["x-vercel-verify"] = request.app[VERIFY_CODE]
        return resp

    app.middlewares.append(verify_header)
    app.middlewares.append(bad_request)
    if on_startup is not None:

        async def ctx(app: web.Application) -> AsyncIterator[None]:
            await on_startup(app)
            yield

        app.cleanup_ctx.append(ctx)

    app.cleanup_ctx.append(
        background_tasks(
            functools.partial(_load_latest_until_done, store),
            *([applier.run] if applier is not None else []),
        )
    )
    app.router.add_post("/webhooks/alertmanager", alertmanager)
    app.router.add_post("/webhooks/heartbeat", heartbeat)
    app.router.add_post("/webhooks/deployments/vercel", vercel)
    app.router.add_get("/webhooks/deployments/vercel", vercel_verify)
    app.router.add_post("/webhooks/deployments/github", github)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    # The runbook pages every alert links to: served here because the recorder runs wherever
    # the stack does (locally, in compose, in production) and already has an HTTP port.
    runbook_pages.add_routes(app, runbooks)
    return app
