"""The Vercel REST API through the shared client (common.upstream.Upstream): bearer token from
`api.token_file` (re-read when the file changes, so a rotated token needs no restart),
rate-limit accounting, classified errors, request and error counts.

Vercel rate-limits per endpoint and says so in X-RateLimit-{Limit,Remaining,Reset} (Reset is
absolute epoch seconds). When Remaining reaches 0, or on 429, the endpoint is left alone until
the reset instead of being retried; on top of that a per-minute ceiling of our own
(`max_requests_per_minute`) leaves room for CI and the CLI, which share the same budget. A
429's reset is read from the header, else from the body's `error.limit.reset`, else taken as a
minute away (`limited_until`), and never trusted further than ten minutes ahead. Error texts
never include the token or response bodies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from common.upstream import SecretFileAuth, Upstream, reset_epoch_seconds
from exporters.vercel.config import Api

# The metric prefix of the client's figures (vercel_api_requests_total, …), and what they are about.
PREFIX = "vercel_api"
WHAT = "the Vercel REST API"
USER_AGENT = "wsinfra-vercel-exporter"
# Waiting longer than this inside one refresh gives the refresh up instead; the refresh loop then
# sleeps until the reset.
MAX_WAIT = 120.0
# A 429 that says nothing usable (or a reset already past): Vercel's windows are a minute.
DEFAULT_BLOCK = 60.0
# A reset far in the future (clock skew, a day-long limit) is re-checked this often, not trusted.
MAX_BLOCK = 600.0


def limited_until(resp: httpx.Response, now: float) -> float:
    """When an endpoint answered 429 may be asked again: X-RateLimit-Reset, else the JSON
    body's `error.limit.reset` (epoch seconds, as Vercel's errors page shows), else a minute
    from now; a reset not in the future is a minute from now too (Upstream caps it at MAX_BLOCK)."""
    header = resp.headers.get("X-RateLimit-Reset")
    reset = reset_epoch_seconds(header, now) if header is not None else None
    if reset is None:
        try:
            reset = float(int(resp.json()["error"]["limit"]["reset"]))
        except (ValueError, KeyError, TypeError, OverflowError, httpx.ResponseNotRead):
            reset = None
    if reset is None or reset <= now:
        return now + DEFAULT_BLOCK
    return reset


def make_upstream(
    cfg: Api,
    *,
    auth: httpx.Auth | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> Upstream:
    """The client for `cfg`: auth from `cfg.token_file` unless one is given."""
    if auth is None:
        if cfg.token_file is None:
            raise ValueError("api.token_file is not set: deployments are not polled")
        auth = SecretFileAuth(bearer=cfg.token_file)
    return Upstream(
        cfg.base_url,
        auth=auth,
        timeout=cfg.timeout,
        user_agent=USER_AGENT,
        reset=reset_epoch_seconds,
        max_requests_per_minute=cfg.max_requests_per_minute,
        default_block=DEFAULT_BLOCK,
        max_block=MAX_BLOCK,
        max_wait=MAX_WAIT,
        transport=transport,
        clock=clock,
        sleep=sleep,
        limited_until=limited_until,
    )
