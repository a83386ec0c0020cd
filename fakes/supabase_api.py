"""Supabase Management API (`https://api.supabase.com/v1`), strict, per ../shared/apis.md §4.2.

Bearer token (401 otherwise), per endpoint-and-project rate limits of 120 a minute with
X-RateLimit-Limit/Remaining/Reset where Reset is the seconds *remaining* in the window, 429 for
the rest of the minute; `GET /v1/projects`, `/v1/projects/{ref}/database/backups`,
`/v1/projects/{ref}/health?services=…` (required, repeated, from the documented enum).
Run for the demo: python -m fakes.supabase_api --listen 127.0.0.1:19785 --token-file F
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

SERVICES = frozenset(
    {"auth", "db", "db_postgres_user", "pg_bouncer", "pooler", "realtime", "rest", "storage"}
)
LIMIT = 120


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class FakeProject:
    ref: str
    name: str
    status: str = "ACTIVE_HEALTHY"
    region: str = "us-east-1"
    pitr: bool = True
    walg: bool = True
    # (unix time, status) newest first
    backups: list[tuple[float, str]] = field(default_factory=list)
    health: dict[str, str] = field(default_factory=dict)

    def daily_backups(self, now: float, days: int = 7, hour_offset: float = 3.0) -> None:
        self.backups = [(now - hour_offset * 3600 - d * 86400, "COMPLETED") for d in range(days)]

    def set_backup_status(self, index: int, status: str) -> int:
        """The backup at `index` (newest first) moves to `status` (PENDING → COMPLETED,
        COMPLETED → REMOVED …), keeping its id, as Supabase's do; returns that id."""
        at, _ = self.backups[index]
        self.backups[index] = (at, status)
        return backup_id(at)


def backup_id(at: float) -> int:
    """A backup's id: from its time, so it stays the same however the list changes."""
    return int(at)


@dataclass
class SupabaseApiState:
    token: str
    clock: Callable[[], float] = time.time
    projects: dict[str, FakeProject] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)  # "500", "429", "malformed" per request
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    _windows: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)


API = web.AppKey("supabase_api", SupabaseApiState)


def _msg(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"message": message}, status=status, headers=headers)


def make_app(state: SupabaseApiState, *, health_path: bool = False) -> web.Application:
    app = web.Application()
    app[API] = state

    def limit(endpoint: str, scope: str) -> tuple[bool, dict[str, str]]:
        now = state.clock()
        start, used = state._windows.get((endpoint, scope), (now, 0))
        if now >= start + 60:
            start, used = now, 0
        used += 1
        state._windows[(endpoint, scope)] = (start, used)
        headers = {
            "X-RateLimit-Limit": str(LIMIT),
            "X-RateLimit-Remaining": str(max(LIMIT - used, 0)),
            "X-RateLimit-Reset": str(max(int(start + 60 - now), 0)),
        }
        return used <= LIMIT, headers

    @web.middleware
    async def strict(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == "/-/healthy" or request.path.startswith("/metrics-endpoint/"):
            return await handler(request)
        query: dict[str, list[str]] = {}
        for k, v in request.query.items():
            query.setdefault(k, []).append(v)
        state.requests.append((request.path, query))
        if request.headers.get("Authorization") != f"Bearer {state.token}":
            return _msg(401, "Unauthorized")
        ref = request.match_info.get("ref", "")
        ok, headers = limit(
            request.match_info.route.resource.canonical
            if request.match_info.route.resource
            else request.path,
            ref,
        )
        if not ok:
            return _msg(429, "Too many requests", headers)
        fault = state.faults.pop(0) if state.faults else None
        if fault == "500":
            return _msg(500, "Internal server error", headers)
        if fault == "429":
            return _msg(
                429,
                "Too many requests",
                {**headers, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "5"},
            )
        resp = await handler(request)
        resp.headers.update(headers)
        if fault == "malformed":
            return web.Response(
                text="<html>gateway</html>", content_type="text/html", headers=headers
            )
        return resp

    def project(request: web.Request) -> FakeProject | web.Response:
        p = state.projects.get(request.match_info["ref"])
        return p if p is not None else _msg(404, "Project not found")

    async def list_projects(_: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "id": p.ref,
                    "ref": p.ref,
                    "name": p.name,
                    "organization_id": "org",
                    "organization_slug": "acme",
                    "region": p.region,
                    "created_at": "2026-01-01T00:00:00.000Z",
                    "status": p.status,
                    "database": {
                        "host": f"db.{p.ref}.supabase.co",
                        "version": "15.8.1",
                        "postgres_engine": "15",
                        "release_channel": "ga",
                    },
                }
                for p in state.projects.values()
            ]
        )

    async def backups(request: web.Request) -> web.Response:
        p = project(request)
        if isinstance(p, web.Response):
            return p
        physical: dict[str, int] = {}
        if p.pitr and p.backups:
            done = [t for t, s in p.backups if s == "COMPLETED"]
            if done:
                physical = {
                    "earliest_physical_backup_date_unix": int(min(done)),
                    "latest_physical_backup_date_unix": int(state.clock()),
                }
        return web.json_response(
            {
                "region": p.region,
                "walg_enabled": p.walg,
                "pitr_enabled": p.pitr,
                "backups": [
                    {
                        "id": backup_id(t),
                        "inserted_at": iso(t),
                        "is_physical_backup": p.pitr,
                        "status": s,
                    }
                    for t, s in p.backups
                ],
                "physical_backup_data": physical,
            }
        )

    async def health(request: web.Request) -> web.Response:
        p = project(request)
        if isinstance(p, web.Response):
            return p
        wanted = request.query.getall("services", [])
        if not wanted:
            return _msg(400, "services is required")
        bad = sorted(set(wanted) - SERVICES)
        if bad:
            return _msg(400, f"services must be one of {', '.join(sorted(SERVICES))}")
        out = []
        for name in wanted:
            status = p.health.get(name, "ACTIVE_HEALTHY")
            item: dict[str, Any] = {
                "name": name,
                "healthy": status == "ACTIVE_HEALTHY",
                "status": status,
            }
            if status == "UNHEALTHY":
                item["error"] = "connect ECONNREFUSED"
            out.append(item)
        return web.json_response(out)

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="OK\n")

    app.middlewares.append(strict)
    if health_path:
        app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/v1/projects", list_projects)
    app.router.add_get("/v1/projects/{ref}/database/backups", backups)
    app.router.add_get("/v1/projects/{ref}/health", health)
    return app


DEMO_REF = "wsinfrademo0000000001"


def demo_state(token: str) -> SupabaseApiState:
    now = time.time()
    state = SupabaseApiState(token=token)
    p = FakeProject(DEMO_REF, "wsinfra demo")
    p.daily_backups(now)
    paused = FakeProject(
        "wsinfrapaused00000001", "paused side project", status="INACTIVE", pitr=False
    )
    state.projects = {p.ref: p, paused.ref: paused}
    return state


async def _serve(listen: str, token: str, keys: dict[str, str] | None) -> None:
    app = make_app(demo_state(token), health_path=True)
    if keys is not None:
        # The demo's per-project metrics endpoint too (fakes/supabase_metrics.py).
        from fakes.supabase_metrics import make_app as metrics_app

        app.add_subapp("/metrics-endpoint/", metrics_app(keys))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host or "127.0.0.1", int(port)).start()
    print(
        f"DEMO Supabase Management API on http://{listen}/v1/projects", file=sys.stderr, flush=True
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fakes.supabase_api")
    p.add_argument("--listen", default="127.0.0.1:19785")
    p.add_argument("--token-file", required=True)
    p.add_argument("--keys-dir", help="also serve per-project metrics for the keys in this folder")
    args = p.parse_args(argv)
    token = Path(args.token_file).read_text().strip()
    with contextlib.suppress(KeyboardInterrupt):
        keys = (
            {p.name: p.read_text().strip() for p in Path(args.keys_dir).iterdir() if p.is_file()}
            if args.keys_dir
            else None
        )
        asyncio.run(_serve(args.listen, token, keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
