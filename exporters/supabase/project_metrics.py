"""Supabase's own per-project metrics endpoint, re-exposed: GET /probe?project=<ref>.

Prometheus scrapes this exporter once per project (targets from GET /sd, HTTP service
discovery); the exporter fetches `https://<ref>.supabase.co/customer/v1/privileged/metrics`
with HTTP Basic `service_role:<secret key>` and passes the exposition through. The secret key
stays in the exporter's secret files: Prometheus's config holds no credential (the public
supabase-grafana setup writes the key into prometheus.yml). Projects come from the config and,
with the Management API's discovery, every active project that has a key file — so a new
project appears without a restart; paused ones drop out.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable

import httpx
from aiohttp import web

from common.config import read_secret_file
from exporters.supabase.config import ProjectMetrics

_REF = re.compile(r"^[a-z0-9]{1,40}$")
MAX_BODY = 32 * 1024 * 1024


class ProjectMetricsProxy:
    def __init__(
        self,
        cfg: ProjectMetrics,
        discovered: Callable[[], Iterable[str]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.cfg = cfg
        # The project refs the Management API knows (ManagementSource.known), if it is polled.
        self.discovered = discovered
        self.client = httpx.AsyncClient(
            timeout=cfg.timeout, transport=transport, follow_redirects=False
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def _key(self, ref: str) -> str | None:
        path = self.cfg.keys_dir / ref
        try:
            key = read_secret_file(path)
        except OSError:
            return None
        return key or None

    def projects(self) -> list[str]:
        """Configured projects, and the active ones the Management API found, that have a key."""
        refs = set(self.cfg.projects)
        if self.discovered is not None:
            refs |= set(self.discovered())
        return sorted(r for r in refs if _REF.match(r) and (self.cfg.keys_dir / r).is_file())

    async def sd(self, request: web.Request) -> web.Response:
        host = request.host  # as Prometheus reached us, so the targets point back here
        return web.json_response(
            [
                {"targets": [host], "labels": {"__param_project": ref, "project": ref}}
                for ref in self.projects()
            ]
        )

    async def probe(self, request: web.Request) -> web.Response:
        ref = request.query.get("project", "")
        if not _REF.match(ref):
            return web.Response(status=400, text="project must be a Supabase project ref\n")
        key = self._key(ref)
        if key is None:
            return web.Response(status=404, text=f"no secret key file for project {ref}\n")
        url = self.cfg.url_template.format(ref=ref)
        start = time.perf_counter()
        ok = False
        body = b""
        reason = "ok"
        try:
            resp = await self.client.get(
                url, auth=("service_role", key), params={"supabase_grafana": "true"}
            )
            if resp.status_code == 200 and len(resp.content) <= MAX_BODY:
                ok, body = True, resp.content
            else:
                reason = (
                    "auth"
                    if resp.status_code in (401, 403)
                    else f"http_{resp.status_code // 100}xx"
                )
        except httpx.TimeoutException:
            reason = "timeout"
        except httpx.TransportError:
            reason = "connect"
        seconds = time.perf_counter() - start
        # Our own two series, after Supabase's: their names are ours alone.
        tail = (
            "# HELP supabase_project_metrics_up 1 if Supabase's metrics endpoint answered this probe.\n"
            "# TYPE supabase_project_metrics_up gauge\n"
            f'supabase_project_metrics_up{{reason="{reason}"}} {1 if ok else 0}\n'
            "# HELP supabase_project_metrics_duration_seconds How long fetching Supabase's metrics took.\n"
            "# TYPE supabase_project_metrics_duration_seconds gauge\n"
            f"supabase_project_metrics_duration_seconds {seconds:.6f}\n"
        )
        if body and not body.endswith(b"\n"):
            body += b"\n"
        return web.Response(body=body + tail.encode(), content_type="text/plain", charset="utf-8")
