"""The operator API's config file: the database, how callers are authenticated, Alertmanager."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import AfterValidator, Field, field_validator, model_validator

from api.backups_config import BackupsSettings
from api.escalation_config import Escalation
from api.maintenance_config import MaintenanceSettings
from api.reconcile_config import Reconcile
from api.vercel_hooks import DeployHooks, hook_urls
from common.config import ConfigError, SecretFile, Strict, read_secret_files
from common.durations import Duration
from common.postgres import PgConnection

# The roles of the spec's user_profiles a machine caller may be given ('user' is for people).
MachineRole = Literal["admin", "developer", "ops", "finance"]

# HS256 with a shorter key is guessable offline from one token; PyJWT calls it insecure too.
MIN_JWT_SECRET_BYTES = 32
# A machine token is a password that never expires: long enough that guessing is hopeless.
MIN_MACHINE_TOKEN_CHARS = 32
# A webhook signing secret shorter than this is a typo or a placeholder, not PagerDuty's.
MIN_WEBHOOK_SECRET_CHARS = 16


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class Database(PgConnection):
    """The API's database (common.postgres). Its login role needs only membership in
    `authenticated` (GRANT authenticated TO <role>), because every query runs after
    SET LOCAL ROLE authenticated, as Supabase's own API does; with machine_tokens it also needs
    to upsert the machine users (docs/operator-api.md lists the grants)."""


class Auth(Strict):
    # The Supabase project's JWT secret (Settings → API → JWT secret): HS256 session tokens
    # are verified with it. At least 32 bytes.
    jwt_secret_file: SecretFile
    # The project's JWKS (https://<ref>.supabase.co/auth/v1/.well-known/jwks.json) for projects
    # on asymmetric signing keys (RS256, ES256). Unset: only HS256 tokens are accepted.
    jwks_url: HttpUrl | None = None
    # How long fetched keys are used before they are fetched again.
    jwks_cache_ttl: Duration = 600.0
    # A token naming a key we do not have makes us fetch the JWKS again (a key rotation), but
    # never more often than this: a stream of forged kids must not become a stream of fetches.
    jwks_min_refetch_interval: Duration = 30.0
    jwks_timeout: Duration = 5.0
    # Supabase session tokens carry aud "authenticated".
    audience: str = "authenticated"
    # Supabase's issuer is https://<ref>.supabase.co/auth/v1; required so that a token of
    # another project signed with a leaked or shared secret is refused.
    issuer: Annotated[str, Field(min_length=1)]
    # Clock skew tolerated on exp/nbf/iat.
    leeway: Duration = 30.0


# A PagerDuty object id (users are like PLH1HKV).
PagerDutyId = Annotated[str, Field(pattern=r"^[A-Z0-9]{1,64}$")]
# Enough of an email to look an account up by; auth.users decides whether one has it.
Email = Annotated[str, Field(pattern=r"^[^@\s]{1,200}@[^@\s]{1,200}$")]
# A machine caller's name (audit log, silences, pagerduty.machine).
MachineName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class MachineToken(Strict):
    # Shown in the audit log (actor_machine) and in silences it creates.
    name: MachineName
    # The bearer token the machine presents (at least 32 characters).
    token_file: SecretFile
    # Its role in user_profiles: what the spec's policies then let it see and do.
    role: MachineRole
    # Its user id (auth.users.id); made to exist with that role when the API starts.
    user_id: UUID


# What Alertmanager's own committed routing tree (alertmanager/alertmanager.yml) pages with: the
# `escalation` route (alertname="Escalation", api/escalation.py, the escalation service) and the
# `critical` route, children of the root, in the tree's order.
DEFAULT_PAGER_ROUTE_KEYS = ('{}/{alertname="Escalation"}', '{}/{severity="critical"}')


class PagerDutyWebhooks(Strict):
    """PagerDuty v3 webhooks at POST /api/infrastructure/webhooks/pagerduty (docs/operator-api.md,
    "Acknowledgements from PagerDuty")."""

    # The webhook subscription's signing secret (PagerDuty shows it once, when the subscription
    # is created); every delivery's X-PagerDuty-Signature is checked against it.
    webhook_secret_file: SecretFile
    # The machine_tokens entry whose user acts for PagerDuty: the writes run as that user under
    # row-level security (so its role must be one the alerts policy lets write: ops, developer
    # or admin), and the audit log names it as the actor. Give it its own entry and user id.
    machine: MachineName
    # Alertmanager's route key (Route.Key() in its dispatch/route.go: the parent's key, "/", the
    # route's matchers) of each route whose receiver has a pagerduty_config. Alertmanager sends
    # PagerDuty dedup_key = sha256(<route key>:<group labels>); the API recomputes it from the
    # group keys the recorder stored. The default is the committed alertmanager.yml's.
    route_keys: Annotated[tuple[str, ...], Field(min_length=1)] = DEFAULT_PAGER_ROUTE_KEYS
    # PagerDuty user id -> the email of that person's account here (auth.users). A v3 payload
    # names who acted only by PagerDuty user id and display name, never by email; a responder
    # found here (and in auth.users) is recorded as acknowledged_by/resolved_by, anyone else as
    # the machine's user, with the PagerDuty name and id in the audit log.
    responders: dict[PagerDutyId, Email] = Field(default_factory=dict)


# A Prometheus label value or metric namespace as /health's config names them (they go into
# our PromQL: nothing that could change its meaning).
LabelValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Namespace = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
SpecService = Literal["vercel", "supabase", "redis", "external_apis"]


class HealthSource(Strict):
    """Where /health looks for one of the spec's services (docs/operator-api.md, "GET /health")."""

    # The `service` label values of its alerts: a firing critical makes it critical, an error
    # or warning degraded.
    alert_services: tuple[LabelValue, ...] = ()
    # The exporters that watch it, by namespace: their `<ns>_up` says whether we can see it.
    exporters: tuple[Namespace, ...] = ()
    # The `service` values of its uptime targets: response time, error rate and regions.
    uptime_services: tuple[LabelValue, ...] = ()
    # Vercel's request figures (error ratio, p95 latency, per region) describe it.
    vercel_traffic: bool = False


def _default_health_sources() -> dict[SpecService, HealthSource]:
    return {
        "vercel": HealthSource(
            alert_services=("vercel",),
            exporters=("vercel",),
            uptime_services=("web", "api"),
            vercel_traffic=True,
        ),
        "supabase": HealthSource(
            alert_services=("database",), exporters=("supabase",), uptime_services=("db",)
        ),
        # Nothing in the stack watches Redis by default: run prometheus-redis-exporter (its
        # redis_up) or add an uptime target with service "redis", or it shows offline.
        "redis": HealthSource(
            alert_services=("redis",), exporters=("redis",), uptime_services=("redis",)
        ),
        "external_apis": HealthSource(
            alert_services=("external_apis",), uptime_services=("external",)
        ),
    }


class Health(Strict):
    # How old the Prometheus half of /health may be before a request refreshes it (one refresh
    # at a time, the others answered from the last snapshot meanwhile); the per-caller half
    # (recent deployments, what the policies let the caller see) is kept as long.
    refresh_interval: Duration = 5.0
    # Beyond this age (Prometheus not answering) /health answers 503 rather than old news.
    max_staleness: Duration = 60.0
    # A region's 5-minute error ratio from which it is degraded, and critical.
    region_degraded_error_ratio: Annotated[float, Field(gt=0, le=1)] = 0.01
    region_critical_error_ratio: Annotated[float, Field(gt=0, le=1)] = 0.5
    services: dict[SpecService, HealthSource] = Field(default_factory=_default_health_sources)

    @field_validator("services", mode="before")
    @classmethod
    def _over_defaults(cls, value: object) -> object:
        # A service the file does not name keeps its default source.
        if isinstance(value, dict):
            return {**_default_health_sources(), **value}
        return value

    @model_validator(mode="after")
    def _ratios_ordered(self) -> Health:
        if self.region_degraded_error_ratio > self.region_critical_error_ratio:
            raise ValueError(
                "region_degraded_error_ratio must not exceed region_critical_error_ratio"
            )
        return self


class ApiConfig(Strict):
    database: Database
    auth: Auth
    machine_tokens: tuple[MachineToken, ...] = ()
    # Acknowledgements and resolutions from PagerDuty (v3 webhooks). Unset: the webhook answers
    # 404.
    pagerduty: PagerDutyWebhooks | None = None
    # Vercel Deploy Hooks that POST /deployments may call. Unset: it answers 422.
    deploy_hooks: DeployHooks | None = None
    # Where manual incidents are posted and acknowledgements become silences (API v2).
    alertmanager_url: HttpUrl
    alertmanager_timeout: Duration = 5.0
    # Prometheus's HTTP API: /health, /metrics and /costs read recording rules, firing alerts
    # and the exporters' figures there (always our PromQL, never a caller's).
    prometheus_url: HttpUrl = "http://127.0.0.1:19090"
    prometheus_timeout: Duration = 5.0
    health: Health = Field(default_factory=Health)
    # Planned maintenance windows (docs/operator-api.md, "Maintenance windows").
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    # Criticals nobody acknowledged in time go to the second level (api/escalation.py).
    escalation: Escalation = Field(default_factory=Escalation)
    # Open rows of alerts Alertmanager no longer holds are resolved (an alert that ended while
    # silenced sends no resolved notification); lost manual incidents posted again.
    reconcile: Reconcile = Field(default_factory=Reconcile)
    # POST/GET /backups and the disaster-recovery plan (docs/operator-api.md, "Backups").
    backups: BackupsSettings = Field(default_factory=BackupsSettings)
    # How long the silence an acknowledgement creates lasts; ack again to extend it.
    ack_ttl: Duration = 4 * 3600.0
    # A manual incident fires until it is resolved through the API, or at most this long
    # (Alertmanager needs an end; a forgotten incident must not page forever).
    incident_max_duration: Duration = 7 * 86400.0
    # The runbook pages (the recorder serves them at /runbooks/); a manual incident links to
    # <runbook_base_url>/ManualIncident.md#manualincident. The default is the local stack's.
    runbook_base_url: HttpUrl = "http://127.0.0.1:19700/runbooks"
    # Largest request body accepted (413 above it); the API's bodies are a few hundred bytes.
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024

    @model_validator(mode="after")
    def _machines_distinct(self) -> ApiConfig:
        names = [m.name for m in self.machine_tokens]
        users = [m.user_id for m in self.machine_tokens]
        if len(set(names)) != len(names):
            raise ValueError("machine_tokens: names must be unique")
        if len(set(users)) != len(users):
            raise ValueError("machine_tokens: user_id must be unique (one role per user)")
        if self.pagerduty is not None and self.pagerduty.machine not in names:
            raise ValueError(
                f"pagerduty.machine: {self.pagerduty.machine!r} is not the name of a "
                "machine_tokens entry"
            )
        maint = self.maintenance.machine
        if self.maintenance.windows_file is not None and not any(
            m.name == maint and m.role == "admin" for m in self.machine_tokens
        ):
            raise ValueError(
                f"maintenance.machine: {maint!r} is not the name of a machine_tokens entry "
                "with role admin (only admins may plan maintenance)"
            )
        return self


@dataclass(frozen=True, slots=True)
class Machine:
    """A machine caller as the API uses it: the token to compare, the user it acts as."""

    name: str
    token: bytes
    role: str
    user_id: UUID

    def __repr__(self) -> str:
        return f"Machine({self.name!r}, role={self.role!r}, token=<redacted>)"


class Secrets:
    """Secret values read once at start; repr never shows them."""

    __slots__ = ("deploy_hook_urls", "jwt_secret", "machines", "pagerduty_secret")

    def __init__(
        self,
        jwt_secret: bytes,
        machines: tuple[Machine, ...] = (),
        pagerduty_secret: bytes | None = None,
        deploy_hook_urls: tuple[str, ...] = (),
    ) -> None:
        self.jwt_secret = jwt_secret
        self.machines = machines
        self.pagerduty_secret = pagerduty_secret
        # In the order of deploy_hooks.hooks; each URL is itself a credential.
        self.deploy_hook_urls = deploy_hook_urls

    @classmethod
    def read(cls, cfg: ApiConfig, path: Path) -> Secrets:
        """Every secret file `cfg` names, read and checked now (a ConfigError lists each bad
        one with its key). The database password is re-read at each connection."""
        return cls.from_values(cfg, read_secret_files(cfg, path), path)

    @classmethod
    def from_values(cls, cfg: ApiConfig, values: dict[str, str], path: Path) -> Secrets:
        """The secrets from read_secret_files' {dotted key: value}, checked for strength."""
        problems = []
        secret = values["auth.jwt_secret_file"].encode()
        if len(secret) < MIN_JWT_SECRET_BYTES:
            problems.append(
                f"auth.jwt_secret_file: the secret in {cfg.auth.jwt_secret_file} is shorter than "
                f"{MIN_JWT_SECRET_BYTES} bytes (Supabase's JWT secrets are longer)"
            )
        machines = []
        for i, m in enumerate(cfg.machine_tokens):
            token = values[f"machine_tokens[{i}].token_file"]
            if len(token) < MIN_MACHINE_TOKEN_CHARS or any(c.isspace() for c in token):
                problems.append(
                    f"machine_tokens[{i}].token_file: the token in {m.token_file} must be at "
                    f"least {MIN_MACHINE_TOKEN_CHARS} characters without spaces"
                )
            machines.append(Machine(m.name, token.encode(), m.role, m.user_id))
        if len({m.token for m in machines}) != len(machines):
            problems.append("machine_tokens: two machines share a token")
        pagerduty = None
        if cfg.pagerduty is not None:
            value = values["pagerduty.webhook_secret_file"]
            if len(value) < MIN_WEBHOOK_SECRET_CHARS or any(c.isspace() for c in value):
                problems.append(
                    f"pagerduty.webhook_secret_file: the secret in "
                    f"{cfg.pagerduty.webhook_secret_file} must be at least "
                    f"{MIN_WEBHOOK_SECRET_CHARS} characters without spaces (PagerDuty's are longer)"
                )
            pagerduty = value.encode()
        urls = () if cfg.deploy_hooks is None else hook_urls(cfg.deploy_hooks, values, problems)
        if problems:
            raise ConfigError(path, problems)
        return cls(secret, tuple(machines), pagerduty, urls)

    def __repr__(self) -> str:
        return "Secrets(<redacted>)"
