"""Vercel Deploy Hooks: the config section naming them, the check of their URLs, and the call.

A deploy hook is a URL Vercel makes for one project and one Git branch
(Settings → Git → Deploy Hooks): `POST https://api.vercel.com/v1/integrations/deploy/<project
id>/<hook id>` (optionally `?buildCache=false`) starts a build of that branch's head and answers
`{"job": {"id": …, "state": "PENDING", "createdAt": <epoch ms>}}`. The URL needs no token because
it IS the token: anyone holding it can deploy. So the URL only ever lives in a secret file
(`hook_url_file`); the config, every log line, error, metric and audit row name a hook by its
project, environment and branch, never by its URL.

This module imports nothing of the API's handlers, so api.config can use its config models.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field, model_validator

from common.config import SecretFile, Strict
from common.durations import Duration

log = logging.getLogger(__name__)

Environment = Literal["production", "staging", "preview"]
# How callers name a project (deployment_config.project); Vercel's project names are like this.
ProjectName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")]
# A Git branch name as deployment_history.git_branch stores it (VARCHAR(200)), no white space.
BranchName = Annotated[str, Field(pattern=r"^[^\s\x00-\x1f\x7f]{1,200}$")]

# The path of a deploy hook: /v1/integrations/deploy/<project id>/<hook id>.
_HOOK_PATH = re.compile(r"^/v1/integrations/deploy/[A-Za-z0-9_]{1,100}/[A-Za-z0-9_-]{1,100}$")
# The same anywhere in a text: what the log filter blanks out.
_HOOK_IN_TEXT = re.compile(r"/v1/integrations/deploy/[^\s\"'?#]*")
# A hook job id as Vercel makes them (okzCd50AIap1O31g0gne); anything else is not stored.
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
# Vercel's error codes (not_found, rate_limited, …) are echoed to the caller only in this shape.
_ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]{0,59}$")

OUTCOMES = ("queued", "unavailable", "refused", "bad_answer")


class DeployHook(Strict):
    # The project, as callers name it in deployment_config.project (use its Vercel name).
    project: ProjectName
    # The environment the hook's branch deploys to (Vercel: the production branch → production,
    # other branches → preview, or a custom environment such as staging).
    environment: Environment
    # The branch the hook was made for in Vercel (a hook always builds that branch's head).
    git_branch: BranchName
    # A file holding the hook's URL, https://api.vercel.com/v1/integrations/deploy/<id>/<id>.
    hook_url_file: SecretFile


class DeployHooks(Strict):
    """POST /api/infrastructure/deployments (docs/operator-api.md, "Starting a deployment")."""

    hooks: Annotated[tuple[DeployHook, ...], Field(min_length=1)]
    # One hook call; past it the answer is 503 (Vercel answers these in well under a second).
    timeout: Duration = 10.0
    # estimated_duration_minutes when the environment has no finished build to go by.
    default_estimate_minutes: Annotated[int, Field(ge=1, le=600)] = 5
    # The estimate is the median build time of this many newest successful builds.
    estimate_sample: Annotated[int, Field(ge=1, le=1000)] = 20

    @model_validator(mode="after")
    def _distinct(self) -> DeployHooks:
        keys = [(h.project, h.environment, h.git_branch) for h in self.hooks]
        if len(set(keys)) != len(keys):
            raise ValueError("hooks: two hooks for the same project, environment and git_branch")
        return self


def check_hook_url(value: str) -> str | None:
    """Why `value` is not a deploy hook URL, or None. The reason never holds the value."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an absolute https:// URL"
    if parts.username or parts.password:
        return "carries credentials"
    if parts.query or parts.fragment:
        return "has a query or fragment (buildCache is set per request)"
    if not _HOOK_PATH.match(parts.path):
        return "is not a deploy hook URL (…/v1/integrations/deploy/<project id>/<hook id>)"
    return None


def hook_urls(cfg: DeployHooks, values: dict[str, str], problems: list[str]) -> tuple[str, ...]:
    """The hook URLs from read_secret_files' values, in the order of cfg.hooks; a URL that is
    not a deploy hook's adds a problem naming the key and file (never the content)."""
    urls = []
    for i, hook in enumerate(cfg.hooks):
        url = values[f"deploy_hooks.hooks[{i}].hook_url_file"]
        why = check_hook_url(url)
        if why:
            problems.append(
                f"deploy_hooks.hooks[{i}].hook_url_file: the content of {hook.hook_url_file} {why}"
            )
        urls.append(url)
    return tuple(urls)


class _RedactHookPaths(logging.Filter):
    """httpx logs each request's URL (at INFO): blank out a deploy hook's path if it does. The
    API's logging set-up keeps httpx at WARNING already; this holds when someone lowers it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            # Only the arguments holding a hook path become (redacted) text: a %d stays a number.
            record.args = tuple(
                _redact(str(a)) if _HOOK_IN_TEXT.search(str(a)) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        return True


def _redact(text: str) -> str:
    return _HOOK_IN_TEXT.sub("/v1/integrations/deploy/<redacted>", text)


def _install_redaction() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactHookPaths) for f in logger.filters):
            logger.addFilter(_RedactHookPaths())


@dataclass(frozen=True, slots=True)
class Hook:
    project: str
    environment: str
    git_branch: str
    url: str = field(repr=False)

    @property
    def name(self) -> str:
        """How logs, errors and audit rows name the hook."""
        return f"{self.project} {self.environment} {self.git_branch}"


@dataclass(frozen=True, slots=True)
class Job:
    """What a hook answered: Vercel's job, not yet a deployment (that id comes later)."""

    id: str
    state: str
    created_at_ms: int | None


class HookFailed(Exception):
    """A hook call that started nothing we know of. `unavailable`: unreachable, timed out, 5xx
    or rate limited (retry later); otherwise Vercel refused it (4xx) or answered nonsense."""

    def __init__(self, reason: str, *, unavailable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unavailable = unavailable


class VercelHooks:
    """The configured hooks and the one call they make."""

    def __init__(
        self,
        cfg: DeployHooks | None,
        urls: tuple[str, ...],
        http: httpx.AsyncClient,
        registry: CollectorRegistry,
    ) -> None:
        hooks = cfg.hooks if cfg is not None else ()
        self.hooks = tuple(
            Hook(h.project, h.environment, h.git_branch, url)
            for h, url in zip(hooks, urls, strict=True)
        )
        self.timeout = cfg.timeout if cfg is not None else 10.0
        self.default_estimate_minutes = cfg.default_estimate_minutes if cfg is not None else 5
        self.estimate_sample = cfg.estimate_sample if cfg is not None else 20
        self.http = http
        self.calls = Counter(
            "api_vercel_deploy_hook_calls",
            "Vercel deploy hook calls by outcome: queued (Vercel took it), unavailable "
            "(unreachable, timed out, 5xx or 429), refused (another 4xx, e.g. the hook was "
            "deleted), bad_answer (2xx without a job).",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.calls.labels(outcome)
        _install_redaction()

    @property
    def projects(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.project for h in self.hooks))

    def configured(self) -> str:
        """The configured hooks, named (for a 422's reason): at most ten."""
        names = [h.name for h in self.hooks[:10]]
        more = len(self.hooks) - len(names)
        return "; ".join(names) + (f"; and {more} more" if more > 0 else "")

    def find(self, project: str, environment: str, git_branch: str) -> Hook | None:
        for h in self.hooks:
            if (h.project, h.environment, h.git_branch) == (project, environment, git_branch):
                return h
        return None

    async def trigger(self, hook: Hook, *, build_cache: bool = True) -> Job:
        """POST the hook (no body, no token: the URL is the credential); the job Vercel queued,
        or HookFailed. Nothing here logs, raises or counts with the URL in it."""
        params = {} if build_cache else {"buildCache": "false"}
        try:
            resp = await self.http.post(
                hook.url,
                params=params,
                timeout=self.timeout,
                follow_redirects=False,
                headers={"User-Agent": "wsinfra-api"},
            )
        except httpx.TimeoutException:
            raise self._fail(hook, "timed out", unavailable=True) from None
        except httpx.HTTPError as exc:
            raise self._fail(hook, f"unreachable ({type(exc).__name__})", True) from None
        if resp.status_code >= 500 or resp.status_code == 429:
            what = "rate limited" if resp.status_code == 429 else f"HTTP {resp.status_code}"
            raise self._fail(hook, f"answered {what}", unavailable=True)
        if resp.status_code >= 300:
            code = _vercel_code(resp)
            reason = f"refused the hook with HTTP {resp.status_code}" + (f" {code}" if code else "")
            if resp.status_code == 404:
                reason += (
                    " (the hook may have been deleted in Vercel: make a new one and put its URL"
                    " in the hook's hook_url_file)"
                )
            raise self._fail(hook, reason, unavailable=False)
        job = _job(resp)
        if job is None:
            # It may have started a build anyway; the log says so, the caller gets a 502.
            log.error(
                "deploy hook answered without a job; a build may have started",
                extra={"hook": hook.name, "status": resp.status_code},
            )
            self.calls.labels("bad_answer").inc()
            raise HookFailed("Vercel answered the deploy hook without a job", unavailable=False)
        self.calls.labels("queued").inc()
        return job

    def _fail(self, hook: Hook, what: str, unavailable: bool) -> HookFailed:
        self.calls.labels("unavailable" if unavailable else "refused").inc()
        log.warning("deploy hook call failed", extra={"hook": hook.name, "reason": what})
        return HookFailed(f"Vercel {what}", unavailable=unavailable)


def _vercel_code(resp: httpx.Response) -> str | None:
    """Vercel's error code ({"error": {"code": …}}) if it has the expected shape."""
    try:
        doc: Any = resp.json()
    except ValueError:
        return None
    code = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        code = doc["error"].get("code")
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else None


def _job(resp: httpx.Response) -> Job | None:
    try:
        doc: Any = resp.json()
    except ValueError:
        return None
    job = doc.get("job") if isinstance(doc, dict) else None
    if not isinstance(job, dict):
        return None
    jid, state, created = job.get("id"), job.get("state"), job.get("createdAt")
    if not isinstance(jid, str) or not _JOB_ID.match(jid):
        return None
    if not isinstance(state, str) or not _ERROR_CODE.match(state.lower()):
        return None
    ok_created = isinstance(created, int) and not isinstance(created, bool)
    return Job(jid, state, created if ok_created else None)
