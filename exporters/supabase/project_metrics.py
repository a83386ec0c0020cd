"""Supabase's own per-project metrics endpoint, re-exposed: GET /probe?project=<ref>.

Prometheus scrapes this exporter once per project (targets from GET /sd, HTTP service
discovery); the exporter fetches `https://<ref>.supabase.co/customer/v1/privileged/metrics`
with HTTP Basic `service_role:<secret key>` and passes the exposition through. The secret key
stays in the exporter's secret files: Prometheus's config holds no credential (the public
supabase-grafana setup writes the key into prometheus.yml). Projects come from the config and,
with the Management API's discovery, every active project that has a key file — so a new
project appears without a restart; paused ones drop out.

Both endpoints take input from outside (the query string, the Host header): anything that is
not one well-formed project ref or host — missing, repeated, a NUL byte, non-UTF-8, too long —
is a 4xx with a short reason, counted in supabase_project_metrics_bad_requests_total, never a
5xx; the hostile value is never echoed back.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable

import httpx
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric

from common.config import read_secret_file
from common.ingress import BadRequest
from exporters.supabase.config import ProjectMetrics

_REF = re.compile(r"[a-z0-9]{1,40}")
# What /sd hands back to Prometheus as the target: a host name or address, and a port.
_HOST = re.compile(r"(?:[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")
MAX_BODY = 32 * 1024 * 1024
# Why a request was refused, per endpoint (a closed set: the counter's labels).
REASONS: dict[str, tuple[str, ...]] = {
    "probe": (
        "invalid_query",  # a query string that does not parse
        "missing_project",  # no ?project=
        "repeated_parameter",  # ?project= given more than once
        "invalid_project",  # not a project ref: wrong characters, NUL, non-UTF-8, too long
        "unknown_project",  # no secret key file for it (404)
    ),
    "sd": ("invalid_host",),  # a Host header that is not host[:port]
}
# (endpoint, reason) → requests refused: as the snapshot copies them.
Refused = tuple[tuple[tuple[str, str], int], ...]


def project_ref(request: web.Request) -> str:
    """The one `project` parameter, a Supabase project ref; BadRequest otherwise."""
    try:
        values = request.query.getall("project", [])
    except (ValueError, UnicodeError):
        raise BadRequest("invalid_query", "the query string does not parse", 400) from None
    if not values:
        raise BadRequest("missing_project", "give ?project=<project ref>", 400)
    if len(values) > 1:
        raise BadRequest("repeated_parameter", "give ?project= once", 400)
    if not _REF.fullmatch(values[0]):
        raise BadRequest(
            "invalid_project",
            "project must be a Supabase project ref (1 to 40 lowercase letters and digits)",
            400,
        )
    return values[0]


def collect(refused: Refused) -> list[Metric]:
    fam = CounterMetricFamily(
        "supabase_project_metrics_bad_requests",
        "Requests to /probe and /sd refused (4xx) by reason: a missing, repeated, malformed or unknown project; a malformed Host.",
        labels=["endpoint", "reason"],
    )
    for (endpoint, reason), n in refused:
        fam.add_metric([endpoint, reason], n)
    return [fam]


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
        # Every (endpoint, reason) from the start, so a first refusal is a rate, not a new series.
        self.refused: Counter[tuple[str, str]] = Counter(
            {(e, r): 0 for e, reasons in REASONS.items() for r in reasons}
        )

    def refused_counts(self) -> Refused:
        """A copy of the counts, taken on the event loop for the scrape's snapshot."""
        return tuple(sorted(self.refused.items()))

    def _refuse(self, endpoint: str, exc: BadRequest) -> web.Response:
        self.refused[(endpoint, exc.reason)] += 1
        # The reason and a fixed text: the offending value is not echoed back.
        return web.Response(status=exc.status, text=f"{exc.reason}: {exc.detail}\n")

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
        return sorted(r for r in refs if _REF.fullmatch(r) and (self.cfg.keys_dir / r).is_file())

    async def sd(self, request: web.Request) -> web.Response:
        host = request.host  # as Prometheus reached us, so the targets point back here
        if not _HOST.fullmatch(host):
            return self._refuse(
                "sd", BadRequest("invalid_host", "the Host header must be host[:port]", 400)
            )
        return web.json_response(
            [
                {"targets": [host], "labels": {"__param_project": ref, "project": ref}}
                for ref in self.projects()
            ]
        )

    async def probe(self, request: web.Request) -> web.Response:
        try:
            ref = project_ref(request)
        except BadRequest as exc:
            return self._refuse("probe", exc)
        key = self._key(ref)
        if key is None:
            return self._refuse(
                "probe",
                BadRequest("unknown_project", f"no secret key file for project {ref}", 404),
            )
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
