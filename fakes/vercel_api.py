"""Vercel REST API: `GET /v6/deployments` and `/v7/deployments`, strict, per ../shared/apis.md §1;
and Deploy Hooks, `POST /v1/integrations/deploy/<project id>/<hook id>[?buildCache=false]`.

Strict like the real one: Bearer token (403 `forbidden` otherwise), team scope by `teamId` or
`slug`, only documented query parameters (400 `bad_request` for others), `limit` 1-100,
`pagination: {count, next, prev}` with `until=<next>` for the next page, and per-token rate
limits with X-RateLimit-Limit/Remaining/Reset (absolute epoch seconds) and 429 `rate_limited`.

Deployments live on a timeline: each has created/building/ready (or error) times, and what a
request sees depends on the fake's clock: not yet created, QUEUED, BUILDING, then READY or
ERROR. Tests and benchmarks drive the clock; the demo uses real time.

Deploy hooks (vercel.com/docs/deploy-hooks): no token, the URL is the credential; GET and POST
both trigger ("send a GET or POST request to the provided URL"); the answer is
`{"job": {"id", "state": "PENDING", "createdAt"}}`. An unknown project or hook id is a 404 in
Vercel's error shape. Each trigger is recorded (`hook_calls`) and, for a hook that names its
deployment, adds a deployment of the hook's branch to the timeline: queued now, building a few
seconds later, then READY (the demo's webhooks then report it like any other).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

LIST_PARAMS = frozenset(
    {
        "app",
        "from",
        "to",
        "limit",
        "projectId",
        "projectIds",
        "target",
        "users",
        "since",
        "until",
        "state",
        "rollbackCandidate",
        "branch",
        "sha",
        "teamId",
        "slug",
    }
)
STATES = frozenset({"BUILDING", "ERROR", "INITIALIZING", "QUEUED", "READY", "CANCELED", "BLOCKED"})
FAULTS = ("500", "502", "429", "malformed", "truncated", "timeout", "shape")
_UID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
# Hook job ids look like okzCd50AIap1O31g0gne (the deploy hooks page's example).
_JOB_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _err(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)


@dataclass(slots=True)
class FakeDeployment:
    uid: str
    project_id: str
    name: str
    created_ms: int
    building_ms: int
    done_ms: int
    outcome: str  # READY or ERROR
    target: str | None
    sha: str
    ref: str

    def view(self, now_ms: int) -> dict[str, Any] | None:
        if now_ms < self.created_ms:
            return None
        if now_ms < self.building_ms:
            state = "QUEUED"
        elif now_ms < self.done_ms:
            state = "BUILDING"
        else:
            state = self.outcome
        doc: dict[str, Any] = {
            "uid": self.uid,
            "name": self.name,
            "projectId": self.project_id,
            "url": f"{self.name}-{self.uid[4:13].lower()}-acme.vercel.app",
            "created": self.created_ms,
            "createdAt": self.created_ms,
            "state": state,
            "readyState": state,
            "type": "LAMBDAS",
            "source": "git",
            "target": self.target,
            "creator": {"uid": "eLrCnEgbKhsHyfbiNR7E8496", "username": "demo"},
            "meta": {
                "githubCommitSha": self.sha,
                "githubCommitRef": self.ref,
                "githubCommitMessage": "demo change",
                "githubDeployment": "1",
            },
            "inspectorUrl": f"https://vercel.com/acme/{self.name}/{self.uid[4:]}",
            "aliasError": None,
        }
        if state != "QUEUED":
            doc["buildingAt"] = self.building_ms
        if state == "READY":
            doc["ready"] = self.done_ms
            doc["readySubstate"] = "PROMOTED" if self.target == "production" else "STAGED"
            doc["aliasAssigned"] = self.done_ms + 500
            doc["isRollbackCandidate"] = self.target == "production"
        if state == "ERROR":
            doc["errorCode"] = "BUILD_FAILED"
            doc["errorMessage"] = 'Command "npm run build" exited with 1'
        return doc


def timeline(
    project_id: str,
    name: str,
    start_s: float,
    end_s: float,
    every_s: float,
    *,
    seed: int = 7,
    build_s: tuple[float, float] = (40.0, 120.0),
    error_ratio: float = 0.1,
    production_every: int = 4,
) -> list[FakeDeployment]:
    """Deployments created every `every_s` from start to end: previews, every Nth to production."""
    rng = random.Random(f"{seed}:{project_id}")
    out = []
    t = start_s
    i = 0
    while t < end_s:
        created = int(t * 1000) + i % 997  # unique milliseconds: `until` paging is exact
        queue = rng.uniform(0.5, 8.0)
        build = rng.uniform(*build_s)
        prod = i % production_every == 0
        out.append(
            FakeDeployment(
                uid="dpl_"
                + "".join(
                    rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
                    for _ in range(24)
                ),
                project_id=project_id,
                name=name,
                created_ms=created,
                building_ms=created + int(queue * 1000),
                done_ms=created + int((queue + build) * 1000),
                outcome="ERROR" if rng.random() < error_ratio else "READY",
                target="production" if prod else None,
                sha=f"{rng.getrandbits(160):040x}",
                ref="main" if prod else f"feature-{i % 13}",
            )
        )
        t += every_s
        i += 1
    return out


@dataclass(frozen=True, slots=True)
class FakeHook:
    """A deploy hook as Vercel keeps it: one project, one branch."""

    project_id: str
    hook_id: str
    ref: str
    # "production" when `ref` is the project's production branch, else None (a preview).
    target: str | None = None
    # The project's name: set, a trigger adds a deployment to the timeline.
    name: str | None = None
    build_s: float = 45.0


@dataclass(frozen=True, slots=True)
class HookCall:
    """One accepted trigger, as a test asserts it."""

    method: str
    project_id: str
    hook_id: str
    query: dict[str, str]
    job_id: str
    created_ms: int


@dataclass
class VercelApiState:
    token: str
    team_id: str | None = None
    team_slug: str | None = None
    rate_limit: int = 500  # "Deployments retrieval per minute" (docs/limits)
    clock: Callable[[], float] = time.time
    deployments: list[FakeDeployment] = field(default_factory=list)
    # One fault is consumed per request, in order: "500", "429", "malformed", "truncated"…
    faults: list[str] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    # Called after each answered list request: tests change the data between pages with it.
    after_request: Callable[[VercelApiState], None] | None = None
    _window: tuple[int, int] = (0, 0)  # (window start epoch s, used)
    hooks: list[FakeHook] = field(default_factory=list)
    hook_calls: list[HookCall] = field(default_factory=list)

    def add(self, items: list[FakeDeployment]) -> None:
        # A new list, swapped in whole: the demo's webhook thread iterates the old one meanwhile.
        self.deployments = sorted(
            [*self.deployments, *items], key=lambda d: d.created_ms, reverse=True
        )

    def remove(self, uid: str) -> None:
        self.deployments = [d for d in self.deployments if d.uid != uid]


API = web.AppKey("vercel_api", VercelApiState)


def _int_param(q: dict[str, str], name: str) -> int | web.Response | None:
    if name not in q:
        return None
    try:
        return int(q[name])
    except ValueError:
        return _err(400, "bad_request", f"Invalid request: `{name}` should be number.")


def make_app(state: VercelApiState, *, health: bool = False) -> web.Application:
    """`health` adds /-/healthy for the demo stack's readiness check (Vercel has no such path)."""
    app = web.Application()
    app[API] = state

    def limits(headers: dict[str, str]) -> bool:
        """Count this request in the per-minute window; False if over the limit."""
        now = state.clock()
        start, used = state._window
        if now >= start + 60:
            start, used = int(now), 0
        used += 1
        state._window = (start, used)
        headers["X-RateLimit-Limit"] = str(state.rate_limit)
        headers["X-RateLimit-Remaining"] = str(max(state.rate_limit - used, 0))
        headers["X-RateLimit-Reset"] = str(start + 60)
        return used <= state.rate_limit

    def rate_limited(reset: int, headers: dict[str, str]) -> web.Response:
        # The errors page's body (with `limit`), one form used throughout.
        resp = _err(
            429,
            "rate_limited",
            "Rate limit exceeded",
            limit={
                "remaining": 0,
                "reset": reset,
                "resetMs": reset * 1000,
                "total": state.rate_limit,
            },
        )
        resp.headers.update(headers)
        return resp

    async def list_deployments(request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        state.requests.append((request.path, q))
        if request.headers.get("Authorization") != f"Bearer {state.token}":
            return _err(403, "forbidden", "Not authorized")
        headers: dict[str, str] = {}
        if not limits(headers):
            return rate_limited(state._window[0] + 60, headers)
        fault = state.faults.pop(0) if state.faults else None
        if fault in ("500", "502"):
            return _err(
                int(fault), "internal_server_error", "An unexpected internal error occurred"
            )
        if fault == "429":
            reset = int(state.clock()) + 2
            return rate_limited(
                reset, {**headers, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
            )
        if fault == "timeout":
            await asyncio.sleep(3600)
        unknown = sorted(set(q) - LIST_PARAMS)
        if unknown:
            return _err(
                400,
                "bad_request",
                f"Invalid request: should NOT have additional property `{unknown[0]}`.",
            )
        if state.team_id is not None:
            in_team = q.get("teamId") == state.team_id or (
                state.team_slug is not None and q.get("slug") == state.team_slug
            )
            if not in_team:
                return _err(403, "forbidden", "Not authorized")
        elif "teamId" in q or "slug" in q:
            return _err(403, "forbidden", "Not authorized")
        if "projectId" in q and "projectIds" in q:
            return _err(
                400,
                "bad_request",
                "Invalid request: `projectId` and `projectIds` cannot be used together.",
            )
        parsed = {n: _int_param(q, n) for n in ("limit", "since", "until")}
        for v in parsed.values():
            if isinstance(v, web.Response):
                return v
        limit = parsed["limit"] if parsed["limit"] is not None else 20
        assert isinstance(limit, int)
        if not 1 <= limit <= 100:
            return _err(400, "bad_request", "Invalid request: `limit` should be <= 100.")
        states = set(q["state"].split(",")) if "state" in q else None
        if states is not None and not states <= STATES:
            return _err(
                400, "bad_request", "Invalid request: `state` should be one of the allowed values."
            )
        now_ms = int(state.clock() * 1000)
        since, until = parsed["since"], parsed["until"]
        matched = []
        for d in state.deployments:
            if "projectId" in q and d.project_id != q["projectId"]:
                continue
            if isinstance(until, int) and d.created_ms >= until:
                continue
            if isinstance(since, int) and d.created_ms < since:
                break  # newest first: everything after is older still
            view = d.view(now_ms)
            if view is None:
                continue
            if "target" in q and view["target"] != q["target"]:
                continue
            if states is not None and view["state"] not in states:
                continue
            matched.append(view)
            if len(matched) > limit:
                break
        page = matched[:limit]
        more = len(matched) > limit
        body = {
            "deployments": page,
            "pagination": {
                "count": len(page),
                "next": page[-1]["created"] if more else None,
                "prev": page[0]["created"] if page else None,
            },
        }
        if fault == "shape":
            body = {"deployments": "not a list"}
        resp = web.json_response(body, headers=headers)
        if state.after_request is not None:
            state.after_request(state)
        if fault == "malformed":
            resp = web.Response(
                text="<html>Bad gateway</html>", content_type="text/html", headers=headers
            )
        if fault == "truncated":
            text = resp.text or ""
            resp = web.Response(
                text=text[: len(text) // 2], content_type="application/json", headers=headers
            )
        return resp

    async def deploy_hook(request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        state.requests.append((request.path, q))
        fault = state.faults.pop(0) if state.faults else None
        if fault in ("500", "502"):
            return _err(
                int(fault), "internal_server_error", "An unexpected internal error occurred"
            )
        if fault == "timeout":
            await asyncio.sleep(3600)
        project_id = request.match_info["project"]
        hook_id = request.match_info["hook"]
        hook = next(
            (h for h in state.hooks if (h.project_id, h.hook_id) == (project_id, hook_id)), None
        )
        if hook is None:
            return _err(404, "not_found", "Deploy Hook not found")
        unknown = sorted(set(q) - {"buildCache"})
        if unknown:
            return _err(
                400,
                "bad_request",
                f"Invalid request: should NOT have additional property `{unknown[0]}`.",
            )
        if q.get("buildCache", "true") not in ("true", "false"):
            return _err(400, "bad_request", "Invalid request: `buildCache` should be boolean.")
        now_ms = int(state.clock() * 1000)
        rng = random.Random(f"{hook_id}:{len(state.hook_calls)}")
        job_id = "".join(rng.choice(_JOB_ALPHABET) for _ in range(20))
        state.hook_calls.append(HookCall(request.method, project_id, hook_id, q, job_id, now_ms))
        if hook.name is not None:
            uid = "dpl_" + "".join(rng.choice(_UID_ALPHABET) for _ in range(24))
            state.add(
                [
                    FakeDeployment(
                        uid=uid,
                        project_id=project_id,
                        name=hook.name,
                        created_ms=now_ms + 1000,
                        building_ms=now_ms + 3000,
                        done_ms=now_ms + 3000 + int(hook.build_s * 1000),
                        outcome="READY",
                        target=hook.target,
                        sha=f"{rng.getrandbits(160):040x}",
                        ref=hook.ref,
                    )
                ]
            )
        if fault == "malformed":
            return web.Response(text="<html>Bad gateway</html>", content_type="text/html")
        return web.json_response({"job": {"id": job_id, "state": "PENDING", "createdAt": now_ms}})

    async def not_found(request: web.Request) -> web.Response:
        state.requests.append((request.path, dict(request.query)))
        return _err(404, "not_found", "The requested path was not found")

    if health:

        async def healthy(_: web.Request) -> web.Response:
            return web.Response(text="OK\n")

        app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/v6/deployments", list_deployments)
    app.router.add_get("/v7/deployments", list_deployments)
    for method in ("GET", "POST"):
        app.router.add_route(method, "/v1/integrations/deploy/{project}/{hook}", deploy_hook)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
