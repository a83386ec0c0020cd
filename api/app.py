"""The operator API's HTTP side: routes, the one middleware every answer passes (request id,
errors as JSON, request counting), the OpenAPI document, health, readiness and metrics.

Status contract: 200/202 done; 400/413/415/422 bad input (api/bodies.py); 401 no or bad
credentials (with WWW-Authenticate; at the PagerDuty webhook, no or a bad signature, without);
403 row-level security refused the write; 404 no such row for a caller allowed to write it (or
PagerDuty webhooks not configured); 409 the alert is already resolved, or a maintenance or backup
conflict; 502/503 Alertmanager, the database or the JWKS is not answering, and nothing was
written. Every error body is {"error": <closed code>, "reason": <text>}; no answer is a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import psycopg
import yaml
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from psycopg_pool import PoolTimeout

from api import (
    alerts,
    backups,
    costs,
    deploy,
    deployments,
    disaster_recovery,
    infra_metrics,
    pagerduty,
)
from api.alertmanager import Alertmanager
from api.auth import Authenticator, JwksCache
from api.config import ApiConfig, Secrets
from api.db import Database
from api.errors import ApiError
from api.escalation import make_escalator
from api.health import HEALTH, HealthCache, get_health
from api.maintenance import install as install_maintenance
from api.maintenance import refresh_gauge
from api.metrics import UNMATCHED, Metrics, method_label
from api.prometheus import Prometheus
from api.reconcile import make_reconciler
from api.state import REQUEST_ID, SERVICES, PagerDutySettings, Services, Settings
from api.vercel_hooks import VercelHooks
from common.web import healthy

log = logging.getLogger(__name__)

PREFIX = "/api/infrastructure"
OPENAPI = Path(__file__).resolve().parent / "openapi.yaml"
OPENAPI_JSON = web.AppKey("openapi_json", bytes)
HTTP = web.AppKey("http", httpx.AsyncClient)
REGISTRY = web.AppKey("registry", CollectorRegistry)

# A caller's X-Request-Id is kept (it joins their logs with our audit rows) when it is a sane
# token; anything else is replaced, never stored.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
# Statuses aiohttp raises itself (no route, wrong method, body too large) → our codes.
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def load_openapi(path: Path = OPENAPI) -> bytes:
    """The OpenAPI document as the JSON served; a broken file fails at start, not per request."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3.1"):
        raise ValueError(f"{path}: not an OpenAPI 3.1 document")
    return json.dumps(doc, separators=(",", ":")).encode()


def _error(
    code: str, reason: str, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": code, "reason": reason}, status=status, headers=headers)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def edge(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    metrics = request.app[SERVICES].metrics
    code = None
    try:
        resp = await handler(request)
    except ApiError as exc:
        code = exc.code
        resp = _error(exc.code, exc.reason, exc.status, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "invalid_request")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        resp = _error(code, exc.reason, exc.status, headers)
    except Exception:
        # The one catch-all of the process boundary: logged with its traceback here, and the
        # caller gets a plain 500 without one.
        log.exception("request failed", extra={"route": _route(request), "request_id": request_id})
        code = "internal"
        resp = _error(code, "internal error; the log has the details", 500)
    if code is not None:
        metrics.rejected.labels(code).inc()
    resp.headers["X-Request-Id"] = request_id
    metrics.requests.labels(_route(request), method_label(request.method), str(resp.status)).inc()
    return resp


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_JSON], content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    ok = await services.db.ready() and services.machines_provisioned
    services.ready = ok
    if ok:
        return web.Response(text="OK\n")
    return web.Response(
        status=503,
        text="database unreachable, not migrated (0011), or machine users not yet set up\n",
    )


async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    services.ready = await services.db.ready() and services.machines_provisioned
    await refresh_gauge(request.app)
    return web.Response(
        body=generate_latest(request.app[REGISTRY]), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def provision_until_done(services: Services, max_delay: float = 30.0) -> None:
    """Make the machine users exist; retried while the database is away (or refuses, which the
    log explains), so the API can start before the database does."""
    delay = 0.5
    while True:
        try:
            await services.db.provision_machines(services.machines)
        except psycopg.errors.InsufficientPrivilege as exc:
            log.error(
                "machine users cannot be set up: the API's login role lacks a grant on auth.users "
                "or user_profiles (docs/operator-api.md lists them)",
                extra={"error": exc.diag.message_primary},
            )
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("machine users not yet set up", extra={"error": type(exc).__name__})
        else:
            services.machines_provisioned = True
            if services.machines:
                log.info("machine users set up", extra={"machines": len(services.machines)})
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)


def _pagerduty(cfg: ApiConfig, secrets: Secrets) -> PagerDutySettings | None:
    if cfg.pagerduty is None or secrets.pagerduty_secret is None:
        return None
    # The config validator made sure the machine is a machine_tokens entry.
    (machine,) = [m for m in secrets.machines if m.name == cfg.pagerduty.machine]
    return PagerDutySettings(
        secret=secrets.pagerduty_secret,
        machine=machine,
        route_keys=cfg.pagerduty.route_keys,
        responders=dict(cfg.pagerduty.responders),
    )


def make_app(cfg: ApiConfig, secrets: Secrets, *, openapi_path: Path = OPENAPI) -> web.Application:
    app = web.Application(client_max_size=cfg.max_body_bytes, middlewares=[edge])
    # One client for Alertmanager and the JWKS; explicit timeouts bound every call.
    http = httpx.AsyncClient(timeout=cfg.alertmanager_timeout, follow_redirects=False)
    jwks = None
    if cfg.auth.jwks_url is not None:
        jwks = JwksCache(
            cfg.auth.jwks_url,
            http,
            ttl=cfg.auth.jwks_cache_ttl,
            min_interval=cfg.auth.jwks_min_refetch_interval,
            timeout=cfg.auth.jwks_timeout,
        )
    registry = CollectorRegistry(auto_describe=False)
    services = Services(
        db=Database(cfg.database),
        alertmanager=Alertmanager(cfg.alertmanager_url, http, cfg.alertmanager_timeout),
        auth=Authenticator(
            secrets.jwt_secret,
            secrets.machines,
            audience=cfg.auth.audience,
            issuer=cfg.auth.issuer,
            leeway=cfg.auth.leeway,
            jwks=jwks,
        ),
        metrics=Metrics(registry, lambda: services.ready),
        settings=Settings(
            ack_ttl=cfg.ack_ttl,
            incident_max_duration=cfg.incident_max_duration,
            runbook_url=f"{cfg.runbook_base_url}/ManualIncident.md#manualincident",
            max_body_bytes=cfg.max_body_bytes,
        ),
        prometheus=Prometheus(cfg.prometheus_url, http, cfg.prometheus_timeout),
        machines=secrets.machines,
        machines_provisioned=not secrets.machines,
        pagerduty=_pagerduty(cfg, secrets),
        deploy_hooks=VercelHooks(cfg.deploy_hooks, secrets.deploy_hook_urls, http, registry),
    )
    app[SERVICES] = services
    app[REGISTRY] = registry
    app[HTTP] = http
    app[OPENAPI_JSON] = load_openapi(openapi_path)
    app[HEALTH] = HealthCache(cfg.health, services.prometheus, services.db, services.metrics)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await services.db.open()
        task = asyncio.create_task(provision_until_done(services))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await services.db.close()
            await http.aclose()

    app.cleanup_ctx.append(lifecycle)
    # After lifecycle: the loop starts once the pool is open and stops before it closes.
    make_escalator(app, cfg.escalation, cfg.runbook_base_url)
    make_reconciler(app, cfg.reconcile, cfg.incident_max_duration)
    install_maintenance(app, cfg, registry, PREFIX)
    app.router.add_get(f"{PREFIX}/health", get_health)
    app.router.add_get(f"{PREFIX}/metrics", infra_metrics.get_metrics)
    app.router.add_get(f"{PREFIX}/costs", costs.get_costs)
    app.router.add_get(f"{PREFIX}/alerts", alerts.list_alerts)
    app.router.add_post(f"{PREFIX}/alerts", alerts.create_alert)
    app.router.add_put(f"{PREFIX}/alerts", alerts.update_alert)
    app.router.add_get(f"{PREFIX}/deployments", deployments.list_deployments)
    app.router.add_post(f"{PREFIX}/deployments", deploy.create_deployment)
    app.router.add_post(f"{PREFIX}/webhooks/pagerduty", pagerduty.webhook)
    app[backups.BACKUPS] = cfg.backups
    app.router.add_get(f"{PREFIX}/backups", backups.list_backups)
    app.router.add_post(f"{PREFIX}/backups", backups.post_backup)
    app.router.add_post(f"{PREFIX}/disaster-recovery", disaster_recovery.post_recovery)
    app.router.add_get(f"{PREFIX}/disaster-recovery/{{id}}", disaster_recovery.get_recovery)
    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    return app
