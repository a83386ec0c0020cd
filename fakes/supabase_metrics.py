"""Supabase's per-project Prometheus endpoint (`/customer/v1/privileged/metrics`), strict, per
../shared/apis.md §4.1: HTTP Basic with user `service_role` and the project's secret key (401
otherwise), Prometheus text with the common labels supabase_project_ref, supabase_identifier
and service_type. On loopback one server stands for every project: the ref is the first path
segment (`/<ref>/customer/v1/privileged/metrics`) instead of the host name.
"""

from __future__ import annotations

import base64

from aiohttp import web

KEYS = web.AppKey("keys", dict)


def exposition(ref: str) -> str:
    common = f'supabase_project_ref="{ref}",supabase_identifier="{ref}"'
    return (
        "# HELP pg_up Whether the last scrape of metrics from PostgreSQL was able to connect to the server (1 for yes, 0 for no).\n"
        "# TYPE pg_up gauge\n"
        f'pg_up{{{common},service_type="postgresql"}} 1\n'
        "# HELP pg_database_size_bytes Disk space used by the database\n"
        "# TYPE pg_database_size_bytes gauge\n"
        f'pg_database_size_bytes{{{common},service_type="postgresql",datname="postgres"}} 1.2e+07\n'
        "# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.\n"
        "# TYPE node_filesystem_avail_bytes gauge\n"
        f'node_filesystem_avail_bytes{{{common},service_type="db",device="/dev/nvme1n1",device_error="",fstype="ext4",mountpoint="/data"}} 7.1e+09\n'
        "# HELP pgrst_db_pool_available Available connections in the pool\n"
        "# TYPE pgrst_db_pool_available gauge\n"
        f'pgrst_db_pool_available{{{common},service_type="postgrest"}} 10\n'
    )


def make_app(keys: dict[str, str]) -> web.Application:
    app = web.Application()
    app[KEYS] = keys

    async def metrics(request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        key = request.app[KEYS].get(ref)
        if key is None:
            return web.Response(status=404, text="Not Found")
        want = "Basic " + base64.b64encode(f"service_role:{key}".encode()).decode()
        if request.headers.get("Authorization") != want:
            return web.Response(
                status=401, text="Unauthorized", headers={"WWW-Authenticate": "Basic"}
            )
        return web.Response(text=exposition(ref), content_type="text/plain", charset="utf-8")

    app.router.add_get("/{ref}/customer/v1/privileged/metrics", metrics)
    return app
