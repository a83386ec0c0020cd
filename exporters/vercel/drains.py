"""The drain endpoints: POST /drains/{logs,traces,speed-insights} (and OTLP's /v1/traces).

Each delivery is checked, parsed and aggregated in a worker thread, one delivery per drain at
a time, then merged in one step: a scrape sees all of a batch or none of it, and a 10 MB body
does not stall /metrics. Every response carries x-vercel-verify when a code is configured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client.core import GaugeMetricFamily, Metric

from exporters.vercel import drain_body
from exporters.vercel.config import Drain, VercelConfig
from exporters.vercel.drain_body import DrainError
from exporters.vercel.labels import Projects, Routes
from exporters.vercel.log_drain import LogDrain
from exporters.vercel.series import BatchCounter, BatchHistogram
from exporters.vercel.speed_insights_drain import SpeedInsightsDrain
from exporters.vercel.trace_drain import TraceDrain, resources_from_json, resources_from_protobuf

log = logging.getLogger("exporters.vercel.drains")

DRAINS = ("logs", "traces", "speed_insights")
OUTCOMES = ("accepted", "bad_signature", "malformed", "too_large")
PROTOBUF = "application/x-protobuf"


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
        self.verify_code = secrets.get("verify_code")
        self.clock = clock
        self.logs = LogDrain(projects)
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
            "Records in accepted deliveries that were not counted, by reason "
            "(duplicate request id, background revalidation, bad value, unknown metric…).",
            ("drain", "reason"),
        )

    # -- metrics -----------------------------------------------------------------------------

    def collectors(self) -> list[BatchCounter | BatchHistogram]:
        return [
            *self.logs.collectors(),
            *self.traces.collectors(),
            *self.speed_insights.collectors(),
            self.deliveries,
            self.records,
            self.skipped,
        ]

    def meta(self) -> list[Metric]:
        rate = GaugeMetricFamily(
            "vercel_drain_sample_rate",
            "The sampling rate configured for each drain; its counts are scaled by 1/rate.",
            labels=["drain"],
        )
        last = GaugeMetricFamily(
            "vercel_drain_last_delivery_timestamp_seconds",
            "When the drain last delivered an accepted batch (Unix time).",
            labels=["drain"],
        )
        for name, ep in self.endpoints.items():
            if ep.cfg is None:
                continue
            rate.add_metric([name], ep.cfg.sample_rate)
            if ep.last_received is not None:
                last.add_metric([name], ep.last_received)
        return [rate, last]

    # -- handling ----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"x-vercel-verify": self.verify_code} if self.verify_code else {}

    def _process(self, name: str, raw: bytes, request_meta: dict[str, Any]) -> Batch:
        ep = self.endpoints[name]
        assert ep.cfg is not None
        assert ep.secret is not None
        body = drain_body.open_body(
            raw,
            ep.secret,
            request_meta["signature"],
            self.max_body,
        )
        weight = 1.0 / ep.cfg.sample_rate
        if name == "traces":
            if request_meta["content_type"] == PROTOBUF:
                batch: Any = self.traces.aggregate(resources_from_protobuf(body), weight)
            else:
                try:
                    doc = json.loads(body) if body.strip() else {}
                except (ValueError, RecursionError) as exc:
                    raise DrainError(
                        400, "malformed", f"body is not JSON: {str(exc)[:200]}"
                    ) from None
                batch = self.traces.aggregate(resources_from_json(doc), weight)
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

    def handler(self, name: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            headers = self._headers()
            ep = self.endpoints[name]
            if request.method in ("GET", "HEAD"):
                # Vercel's endpoint verification: answer with the code, change nothing.
                return web.Response(text="ok\n", headers=headers)
            if ep.cfg is None or ep.secret is None:
                return _error(404, f"the {name} drain is not configured", headers)
            try:
                raw = await _read_bounded(request, self.max_body)
            except DrainError as exc:
                self.deliveries.merge({(name, exc.outcome): 1.0})
                return _error(exc.status, exc.reason, headers)
            ctype = (request.content_type or "").lower()
            meta = {
                "signature": request.headers.get("x-vercel-signature"),
                "content_type": ctype,
            }
            async with ep.lock:
                try:
                    batch = await asyncio.get_running_loop().run_in_executor(
                        None, self._process, name, raw, meta
                    )
                except DrainError as exc:
                    self.deliveries.merge({(name, exc.outcome): 1.0})
                    if exc.outcome != "bad_signature":
                        log.warning(
                            "drain delivery refused",
                            extra={"drain": name, "status": exc.status, "reason": exc.reason},
                        )
                    if exc.status == 403:
                        return web.json_response(
                            {"code": "invalid_signature", "error": exc.reason},
                            status=403,
                            headers=headers,
                        )
                    return _error(exc.status, exc.reason, headers)
            ep.last_received = self.clock()
            self.deliveries.merge({(name, "accepted"): 1.0})
            if name == "traces":
                if ctype == PROTOBUF:
                    return web.Response(
                        body=ExportTraceServiceResponse().SerializeToString(),
                        content_type=PROTOBUF,
                        headers=headers,
                    )
                return web.json_response({}, headers=headers)
            return web.json_response({"accepted": batch.used}, headers=headers)

        return handle


def _error(status: int, reason: str, headers: dict[str, str]) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)


async def _read_bounded(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise DrainError(413, "too_large", f"body exceeds {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise DrainError(413, "too_large", f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
