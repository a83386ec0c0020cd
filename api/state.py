"""What the handlers share, held by the app (never in module globals): the database, Alertmanager,
the authenticator, the metrics and the settings; and `caller`, every handler's first step."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from api.alertmanager import Alertmanager
from api.auth import Authenticator, Identity
from api.config import Machine
from api.db import Database
from api.errors import ApiError
from api.metrics import Metrics
from api.prometheus import Prometheus
from api.vercel_hooks import VercelHooks


@dataclass(frozen=True, slots=True)
class Settings:
    ack_ttl: float
    incident_max_duration: float
    runbook_url: str
    max_body_bytes: int


@dataclass(frozen=True, slots=True)
class PagerDutySettings:
    """The PagerDuty v3 webhook's settings (api.config.PagerDutyWebhooks, secret read)."""

    secret: bytes = field(repr=False)
    machine: Machine
    route_keys: tuple[str, ...]
    # PagerDuty user id -> email of the account here.
    responders: Mapping[str, str]


@dataclass(slots=True)
class Services:
    db: Database
    alertmanager: Alertmanager
    auth: Authenticator
    metrics: Metrics
    settings: Settings
    prometheus: Prometheus
    machines: tuple[Machine, ...] = ()
    # None: PagerDuty webhooks are not configured (the webhook answers 404).
    pagerduty: PagerDutySettings | None = None
    # Set once the machine users exist in the database (api.app provisions them at start);
    # until then a machine caller would silently see nothing, so it is answered 503 instead.
    machines_provisioned: bool = False
    # The last readiness check's answer (api_up).
    ready: bool = False
    # The Vercel deploy hooks POST /deployments calls (None: none configured; it answers 422).
    deploy_hooks: VercelHooks | None = None


SERVICES = web.AppKey("services", Services)
REQUEST_ID = web.RequestKey("request_id", str)


async def caller(request: web.Request) -> Identity:
    """The authenticated caller of this request, or an ApiError (401, or 503)."""
    services = request.app[SERVICES]
    who = await services.auth.identify(request)
    if who.kind == "machine" and not services.machines_provisioned:
        raise ApiError(
            "machine_user_unprovisioned",
            "the machine users are not yet set up in the database; retry",
        )
    return who
