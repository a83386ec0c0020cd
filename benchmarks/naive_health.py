"""The naive GET /health the operator API is measured against: the same answer, built the
obvious way, on every request: one Prometheus query per figure per service (one after
another) and one database query for the recent deployments. No snapshot, no sharing.

Run (benchmarks/api_health.py does): python -m benchmarks.naive_health --listen 127.0.0.1:PORT
    --prometheus URL --conninfo DSN --token-file FILE
"""

from __future__ import annotations

import argparse
import hmac
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

SERVICES = {
    "vercel": ("vercel", "vercel", ("web", "api")),
    "supabase": ("database", "supabase", ("db",)),
    "redis": ("redis", "redis", ("redis",)),
    "external_apis": ("external_apis", None, ("external",)),
}
JOIN = (
    'on (target) group_left (service) max by (target, service) (uptime_target_info{job="uptime"})'
)


def figures(alert_service: str, exporter: str | None, uptime: tuple[str, ...]) -> dict[str, str]:
    services = "|".join(uptime)
    q = {
        "critical": f'count(ALERTS{{alertstate="firing",service="{alert_service}",severity="critical"}})',
        "degraded": f'count(ALERTS{{alertstate="firing",service="{alert_service}",severity=~"error|warning"}})',
        "probes": f'count(uptime_probe_success{{job="uptime"}} * {JOIN} and on (service) '
        f'(uptime_target_info{{service=~"{services}"}}))',
        "seconds": f'avg(uptime_probe_duration_seconds{{job="uptime"}} * {JOIN})',
        "errors": f"avg(target_region:uptime_probe_errors:ratio_rate5m * {JOIN})",
        "regions": f"avg by (region) (target_region:uptime_probe_errors:ratio_rate5m * {JOIN})",
        "region_seconds": f'avg by (region) (uptime_probe_duration_seconds{{job="uptime"}} * {JOIN})',
    }
    if exporter:
        q["up"] = f"max({exporter}_up)"
    return q


GLOBAL = {
    "seconds": 'avg(uptime_probe_duration_seconds{job="uptime"})',
    "availability": "1 - avg(target:uptime_probe_errors:ratio_rate30d)",
    "errors": "sum(project:vercel_request_errors:rate5m) / sum(project:vercel_requests:rate5m)",
    "users": 'sum(supabase_active_users{window="30d"})',
}


def _value(body: dict[str, Any]) -> float | None:
    result = body.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else None


def make_app(prometheus: str, conninfo: str, token: str) -> web.Application:
    http = httpx.AsyncClient(timeout=5)
    pool = AsyncConnectionPool(conninfo, min_size=2, max_size=10, open=False)

    async def query(promql: str) -> dict[str, Any]:
        resp = await http.get(f"{prometheus}/api/v1/query", params={"query": promql})
        return dict(resp.json())

    async def health(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.json_response({"error": "missing_token"}, status=401)
        # One query per figure, one after another: the handler as first written.
        answers: dict[tuple[str, str], Any] = {}
        for name, (alert_service, exporter, uptime) in SERVICES.items():
            for figure, promql in figures(alert_service, exporter, uptime).items():
                answers[(name, figure)] = await query(promql)
        for figure, promql in GLOBAL.items():
            answers[("global", figure)] = await query(promql)
        async with pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT environment, deployment_status, deployed_at, git_branch "
                    "FROM deployment_history ORDER BY deployed_at DESC LIMIT 5"
                )
            ).fetchall()
        services = {}
        for name in SERVICES:
            up = _value(answers.get((name, "up"), {}))
            critical = _value(answers[(name, "critical")])
            degraded = _value(answers[(name, "degraded")])
            status = (
                "offline"
                if up == 0 or (up is None and not _value(answers[(name, "probes")]))
                else "critical"
                if critical
                else "degraded"
                if degraded
                else "healthy"
            )
            services[name] = {
                "status": status,
                "response_time_ms": (_value(answers[(name, "seconds")]) or 0) * 1000,
                "error_rate_percent": (_value(answers[(name, "errors")]) or 0) * 100,
                "region_status": {
                    r["metric"].get("region", ""): {"status": "healthy", "response_time_ms": 0}
                    for r in answers[(name, "regions")].get("data", {}).get("result", [])
                },
            }
        body = {
            "overall_status": "healthy",
            "services": services,
            "performance_metrics": {k: _value(answers[("global", k)]) or 0 for k in GLOBAL},
            "recent_deployments": [
                {"environment": e, "status": s, "deployed_at": str(t), "git_branch": b}
                for e, s, t, b in rows
            ],
        }
        return web.json_response(body)

    async def lifecycle(app: web.Application) -> Any:
        await pool.open()
        yield
        await pool.close()
        await http.aclose()

    app = web.Application()
    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/api/infrastructure/health", health)
    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--conninfo", required=True)
    ap.add_argument("--token-file", type=Path, required=True)
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    token = args.token_file.read_text().strip()
    _ = psycopg  # the pool's driver
    web.run_app(
        make_app(args.prometheus.rstrip("/"), args.conninfo, token),
        host=host,
        port=int(port),
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
