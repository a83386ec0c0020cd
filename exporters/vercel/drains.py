"""The drain endpoints: POST /drains/{logs,traces,speed-insights} (and OTLP's /v1/traces).

A delivery is refused before its body is read when its x-vercel-signature cannot be a signature
(absent, not 40 hex digits), its Content-Type is not one the drain takes, or its Content-Length is
over max_body_bytes. Otherwise the body is hashed as it streams in and held in a Spool (a small
buffer, then a temporary file): one that is wrongly signed costs a fixed amount of memory, is
never decompressed or parsed, and never waits for the drain's lock. A delivery whose signature
matched is parsed and aggregated in a worker thread, one delivery per drain at a time, then
merged in one step: a scrape sees all of a batch or none of it, and a 10 MB body does not stall
/metrics. Every refusal is a 4xx with a short reason, counted by outcome; every response carries
x-vercel-verify when a code is configured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from common.ingress import BadRequest, header_bytes, require_content_type
from exporters.vercel import drain_body
from exporters.vercel.config import Drain, VercelConfig
from exporters.vercel.drain_body import GZIP_MAGIC, BodyMac, DrainError, Spool
from exporters.vercel.labels import Projects, Routes
from exporters.vercel.log_drain import LogDrain
from exporters.vercel.series import BatchCounter, BatchHistogram
from exporters.vercel.snapshot import DrainsSnapshot, DrainView
from exporters.vercel.speed_insights_drain import SpeedInsightsDrain
from exporters.vercel.trace_drain import TraceDrain, resources_from_json, resources_from_protobuf

log = logging.getLogger("exporters.vercel.drains")

DRAINS = ("logs", "traces", "speed_insights")
# The closed set of delivery outcomes (the `outcome` label): accepted, or why it was refused.
OUTCOMES = (
    "accepted",
    "bad_signature",  # 403: no x-vercel-signature, not hex, or not the body's HMAC
    "malformed",  # 400: not JSON/NDJSON/OTLP, NaN or Infinity, nested too deep, bad gzip
    "too_large",  # 413: over max_body_bytes, sent or decompressed
    "unsupported_media_type",  # 415: a Content-Type the drain does not take
    "bad_string",  # 400: a NUL, a lone surrogate or an over-long string anywhere
    "out_of_range",  # 400: an integer over 64 bits or a time outside UTC where one is read
)
PROTOBUF = "application/x-protobuf"
PROTOBUF_TYPES = (PROTOBUF, "application/protobuf")
# OTLP/HTTP: JSON or protobuf, and a receiver answers 415 to anything else.
TRACE_TYPES = ("application/json", *PROTOBUF_TYPES)
# Which Content-Type Vercel sends for JSON and NDJSON drains is not documented: every name for
# JSON, NDJSON, plain text and bytes (gzip is sniffed), none for forms, markup or multipart.
RECORD_TYPES = (
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/jsonlines",
    "text/plain",
    "application/octet-stream",
    "application/gzip",
    "application/x-gzip",
)
READ_CHUNK = 1 << 16
# What an unverified body may hold in memory before the rest goes to the spool file.
SPOOL_MEMORY = 1 << 20


class Batch(Protocol):
    used: int
    skipped: dict[str, int]


@dataclass(slots=True)
class Endpoint:
    name: str
    cfg: Drain | None
    secret: bytes | None
    lock: asyncio.Lock
    last_received: float | None = None


class DrainReceiver:
    def __init__(
        self, cfg: VercelConfig, secrets: dict[str, str], clock: Callable[[], float] = time.time
    ) -> None:
        projects = Projects(cfg.project_names())
        d = cfg.drains
        self.max_body = d.max_body_bytes
        self.spool_dir: Path | None = d.spool_dir
        if self.spool_dir is not None:
            try:
                self.spool_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                # Bodies then stay in memory; Spool logs that once, when it first happens.
                log.warning("cannot create drains.spool_dir", extra={"error": str(exc)})
        self.verify_code = secrets.get("verify_code")
        self.clock = clock
        self.logs = LogDrain(projects, clock=clock)
        self.traces = TraceDrain(projects, d.api_prefixes)
        self.speed_insights = SpeedInsightsDrain(
            projects, Routes(d.routes, d.max_routes), d.web_vitals_value_scale
        )
        self.endpoints = {
            name: Endpoint(
                name,
                getattr(d, name),
                secrets[name].encode() if name in secrets else None,
                asyncio.Lock(),
            )
            for name in DRAINS
        }
        self.deliveries = BatchCounter(
            "vercel_drain_deliveries_total",
            "Drain deliveries (POSTs) received, by outcome. Refused ones changed no other series.",
            ("drain", "outcome"),
        )
        self.deliveries.init((n, o) for n in DRAINS for o in OUTCOMES if self.endpoints[n].cfg)
        self.records = BatchCounter(
            "vercel_drain_records_total",
            "Records in accepted deliveries (as received, before sampling scale-up).",
            ("drain",),
        )
        self.records.init((n,) for n in DRAINS if self.endpoints[n].cfg)
        self.skipped = BatchCounter(
            "vercel_drain_records_skipped_total",
            "Records in accepted deliveries that were not counted, by reason (replay: a log "
            "line already counted, from a delivery Vercel sent again; duplicate request id, "
            "background revalidation, bad value, unknown metric…).",
            ("drain", "reason"),
        )
        if self.endpoints["logs"].cfg:
            self.skipped.init([("logs", "replay")])

    # -- the scrape's copy ------------------------------------------------------------------

    def snapshot(self) -> DrainsSnapshot:
        """Every drain-fed family and each configured drain's figures, copied now (on the event
        loop: merges from the worker threads are taken whole, under each series' lock)."""
        series: list[BatchCounter | BatchHistogram] = [
            *self.logs.collectors(),
            *self.traces.collectors(),
            *self.speed_insights.collectors(),
            self.deliveries,
            self.records,
            self.skipped,
        ]
        return DrainsSnapshot(
            series=tuple(s.freeze() for s in series),
            drains=tuple(
                DrainView(name, ep.cfg.sample_rate, ep.last_received)
                for name, ep in self.endpoints.items()
                if ep.cfg is not None
            ),
        )

    # -- handling ----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"x-vercel-verify": self.verify_code} if self.verify_code else {}

    def _process(self, name: str, raw: bytes, request_meta: dict[str, Any]) -> Batch:
        """Check, parse, aggregate and merge one delivery held in memory: what a delivery costs
        after the socket (the handler streams it instead; the benchmark measures this)."""
        ep = self.endpoints[name]
        assert ep.secret is not None
        body = drain_body.open_body(raw, ep.secret, request_meta["signature"], self.max_body)
        return self._apply(name, body, request_meta["content_type"] in PROTOBUF_TYPES)

    def _ingest(self, name: str, spool: Spool, protobuf: bool) -> Batch:
        """A delivery whose signature matched: decompressed (bounded), parsed and merged."""
        raw = spool.read()
        spool.close()
        body = drain_body.gunzip(raw, self.max_body) if raw[:2] == GZIP_MAGIC else raw
        del raw
        return self._apply(name, body, protobuf)

    def _apply(self, name: str, body: bytes, protobuf: bool) -> Batch:
        ep = self.endpoints[name]
        assert ep.cfg is not None
        weight = 1.0 / ep.cfg.sample_rate
        if name == "traces":
            if protobuf:
                resources = resources_from_protobuf(body)
            else:
                doc = drain_body.parse_json(body) if body.strip() else {}
                resources = resources_from_json(doc)
            batch: Any = self.traces.aggregate(resources, weight)
            self.traces.apply(batch)
            received = batch.spans
        else:
            items = drain_body.records(body)
            if name == "logs":
                batch = self.logs.aggregate(items, weight)
                self.logs.apply(batch)
            else:
                batch = self.speed_insights.aggregate(items, weight)
                self.speed_insights.apply(batch)
            received = len(items)
        self.records.merge({(name,): float(received)})
        if batch.skipped:
            self.skipped.merge({(name, r): float(n) for r, n in batch.skipped.items()})
        return batch  # type: ignore[no-any-return]

    def _content_type(self, name: str, request: web.Request) -> bool:
        """Refuse a Content-Type the drain does not take (415); True for OTLP protobuf."""
        try:
            require_content_type(request, *(TRACE_TYPES if name == "traces" else RECORD_TYPES))
        except BadRequest as exc:
            raise DrainError(
                exc.status,
                exc.reason,
                f"Content-Type {request.content_type[:60]!r} is not one the {name} drain takes",
            ) from None
        return request.content_type in PROTOBUF_TYPES

    async def _receive(self, request: web.Request, secret: bytes, sig: bytes) -> Spool:
        """Stream the body into a Spool while hashing it; return it only if `sig` matches (over
        the bytes sent or, for gzip, the decompressed ones). Holds no lock."""
        limit = self.max_body
        if request.content_length is not None and request.content_length > limit:
            raise DrainError(413, "too_large", f"body exceeds {limit} bytes")
        loop = asyncio.get_running_loop()
        mac = BodyMac(secret)
        spool = Spool(SPOOL_MEMORY, self.spool_dir)
        try:
            try:
                async for chunk in request.content.iter_chunked(READ_CHUNK):
                    if spool.size + len(chunk) > limit:
                        raise DrainError(413, "too_large", f"body exceeds {limit} bytes")
                    mac.update(chunk)
                    if spool.add(chunk):
                        await loop.run_in_executor(None, spool.flush)
            except (HttpProcessingError, ConnectionError) as exc:
                raise DrainError(
                    400, "malformed", f"the body could not be read ({type(exc).__name__})"
                ) from None
            if mac.matches(sig):
                return spool
            if spool.head == GZIP_MAGIC and await loop.run_in_executor(
                None, drain_body.plain_signature_matches, spool.chunks(), secret, sig, limit
            ):
                return spool
            raise drain_body.bad_signature()
        except BaseException:
            spool.close()
            raise

    def _refused(self, request: web.Request, name: str, exc: DrainError) -> web.Response:
        self.deliveries.merge({(name, exc.outcome): 1.0})
        if exc.outcome != "bad_signature":
            log.warning(
                "drain delivery refused",
                extra={"drain": name, "status": exc.status, "reason": exc.reason},
            )
        code = "invalid_signature" if exc.status == 403 else exc.outcome
        resp = web.json_response(
            {"code": code, "error": exc.reason}, status=exc.status, headers=self._headers()
        )
        if not request.content.is_eof():
            # Refused unread (or part read): the connection is not reused; aiohttp discards what
            # the sender still has in flight for at most lingering_time (see cli.py), then closes.
            resp.force_close()
        return resp

    def handler(self, name: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            headers = self._headers()
            ep = self.endpoints[name]
            if request.method in ("GET", "HEAD"):
                # Vercel's endpoint verification: answer with the code, change nothing.
                return web.Response(text="ok\n", headers=headers)
            if ep.cfg is None or ep.secret is None:
                resp = web.json_response(
                    {"code": "not_configured", "error": f"the {name} drain is not configured"},
                    status=404,
                    headers=headers,
                )
                resp.force_close()
                return resp
            try:
                sig = drain_body.parse_signature(header_bytes(request, "x-vercel-signature"))
                if sig is None:
                    raise drain_body.bad_signature()
                protobuf = self._content_type(name, request)
                spool = await self._receive(request, ep.secret, sig)
                try:
                    async with ep.lock:
                        batch = await asyncio.get_running_loop().run_in_executor(
                            None, self._ingest, name, spool, protobuf
                        )
                finally:
                    spool.close()
            except DrainError as exc:
                return self._refused(request, name, exc)
            ep.last_received = self.clock()
            self.deliveries.merge({(name, "accepted"): 1.0})
            if name == "traces":
                if protobuf:
                    return web.Response(
                        body=ExportTraceServiceResponse().SerializeToString(),
                        content_type=request.content_type,
                        headers=headers,
                    )
                return web.json_response({}, headers=headers)
            return web.json_response({"accepted": batch.used}, headers=headers)

        return handle
