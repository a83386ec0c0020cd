"""Trace drain (OTLP/HTTP, JSON or protobuf) → server-side request duration histograms.

Only SERVER spans are requests; their duration is end - start. Vercel adds `vercel.projectId`
to every resource; `@vercel/otel` adds `vercel.project_id`, `cloud.region`/`vercel.region`
and `deployment.environment.name`/`env`. The HTTP status comes from `http.status_code` or
`http.response.status_code`; a span with status ERROR and no HTTP status counts as "error".
Vercel's doc example writes `kind` as a string, the OTLP spec as an integer: both are read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from exporters.vercel import labels as L
from exporters.vercel.drain_body import MAX_STRING, DrainError
from exporters.vercel.series import BatchHistogram, HistogramBatch

SERVER_KINDS = frozenset({2, "2", "SPAN_KIND_SERVER", "server", "SERVER"})
STATUS_ERROR = 2
DURATION_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    30.0,
)
PROJECT_KEYS = ("vercel.projectId", "vercel.project_id")
REGION_KEYS = ("cloud.region", "vercel.region", "vercel.edge_region")
ENV_KEYS = ("deployment.environment.name", "env", "vercel.env")
STATUS_KEYS = ("http.status_code", "http.response.status_code")
ROUTE_KEYS = ("http.route", "next.route", "vercel.matched_path")
# OTLP times are fixed64 nanoseconds since 1970: anything else is no time.
UINT64 = 1 << 64


@dataclass(slots=True)
class Span:
    attrs: dict[str, Any]
    kind: object
    start_ns: int
    end_ns: int
    status_code: int
    name: str


@dataclass(slots=True)
class TraceBatch:
    hist: HistogramBatch
    skipped: dict[str, int] = field(default_factory=dict)
    used: int = 0
    spans: int = 0


def _json_value(v: object) -> object:
    if not isinstance(v, dict):
        return None
    for key in ("stringValue", "intValue", "doubleValue", "boolValue"):
        if key in v:
            return v[key]
    return None


def _json_attrs(items: object) -> dict[str, Any]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise DrainError(400, "malformed", "attributes must be a list")
    out = {}
    for a in items:
        if not isinstance(a, dict) or not isinstance(a.get("key"), str):
            raise DrainError(400, "malformed", "attribute without a string key")
        out[a["key"]] = _json_value(a.get("value"))
    return out


def _int(v: object, what: str) -> int:
    """A fixed64 from OTLP/JSON: a number or a decimal string (as the spec writes 64-bit ints)."""
    if isinstance(v, bool):
        raise DrainError(400, "malformed", f"{what} is not an integer")
    if isinstance(v, int):
        n = v
    elif isinstance(v, str) and v.removeprefix("-").isascii() and v.removeprefix("-").isdigit():
        if len(v) > 21:
            raise DrainError(400, "out_of_range", f"{what} overflows 64 bits")
        n = int(v)
    elif isinstance(v, float) and v.is_integer():
        n = int(v)
    else:
        raise DrainError(400, "malformed", f"{what} is not an integer")
    if not 0 <= n < UINT64:
        raise DrainError(400, "out_of_range", f"{what} is outside 0 to 2^64-1 nanoseconds")
    return n


def _list(doc: Mapping[str, Any], key: str) -> list[Any]:
    v = doc.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise DrainError(400, "malformed", f"{key} must be a list")
    return v


def _obj(v: object, what: str) -> Mapping[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise DrainError(400, "malformed", f"{what} must be an object")
    return v


def resources_from_json(doc: object) -> Iterator[tuple[dict[str, Any], list[Span]]]:
    if not isinstance(doc, dict):
        raise DrainError(400, "malformed", "body is not an OTLP ExportTraceServiceRequest")
    for rs in _list(doc, "resourceSpans"):
        rs = _obj(rs, "resourceSpans[]")
        res = _json_attrs(_obj(rs.get("resource"), "resource").get("attributes"))
        spans: list[Span] = []
        for ss in _list(rs, "scopeSpans"):
            for sp in _list(_obj(ss, "scopeSpans[]"), "spans"):
                sp = _obj(sp, "span")
                status = _obj(sp.get("status"), "status").get("code", 0)
                spans.append(
                    Span(
                        attrs=_json_attrs(sp.get("attributes")),
                        kind=kind if isinstance(kind := sp.get("kind"), str | int) else None,
                        start_ns=_int(sp.get("startTimeUnixNano", 0), "startTimeUnixNano"),
                        end_ns=_int(sp.get("endTimeUnixNano", 0), "endTimeUnixNano"),
                        status_code=2 if status in (2, "2", "STATUS_CODE_ERROR") else 0,
                        name=name if isinstance(name := sp.get("name"), str) else "",
                    )
                )
        yield res, spans


def _pb_str(s: str) -> str:
    # protobuf has refused bad UTF-8 (so no lone surrogate) already; NUL and length are ours.
    if "\x00" in s or len(s) > MAX_STRING:
        raise DrainError(
            400, "bad_string", f"a string holds a NUL or is longer than {MAX_STRING} characters"
        )
    return s


def _pb_value(v: Any) -> object:
    which = v.WhichOneof("value")
    if which == "string_value":
        return _pb_str(v.string_value)
    if which in ("int_value", "double_value", "bool_value"):
        return getattr(v, which)
    return None


def _pb_attrs(attributes: Any) -> dict[str, Any]:
    return {_pb_str(a.key): _pb_value(a.value) for a in attributes}


def resources_from_protobuf(body: bytes) -> Iterator[tuple[dict[str, Any], list[Span]]]:
    try:
        req = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise DrainError(400, "malformed", f"body is not OTLP protobuf: {exc}") from None
    for rs in req.resource_spans:
        res = _pb_attrs(rs.resource.attributes)
        spans = [
            Span(
                attrs=_pb_attrs(sp.attributes),
                kind=int(sp.kind),
                start_ns=sp.start_time_unix_nano,
                end_ns=sp.end_time_unix_nano,
                status_code=int(sp.status.code),
                name=_pb_str(sp.name),
            )
            for ss in rs.scope_spans
            for sp in ss.spans
        ]
        yield res, spans


def _first(attrs: Mapping[str, Any], res: Mapping[str, Any], keys: tuple[str, ...]) -> object:
    for k in keys:
        v = attrs.get(k)
        if v is None:
            v = res.get(k)
        if v is not None:
            return v
    return None


class TraceDrain:
    name = "traces"

    def __init__(self, projects: L.Projects, api_prefixes: list[str]) -> None:
        self.projects = projects
        self.api_prefixes = tuple(api_prefixes)
        self.duration = BatchHistogram(
            "vercel_request_duration_seconds",
            "Server-side request duration from SERVER spans of the trace drain, scaled by 1/sample rate. "
            "route_kind: api (route under an API prefix), page, or unknown (no route on the span).",
            ("project", "environment", "region", "route_kind", "status_class"),
            DURATION_BUCKETS,
        )

    def route_kind(self, attrs: Mapping[str, Any], name: str) -> str:
        route = _first(attrs, {}, ROUTE_KEYS)
        if not isinstance(route, str):
            # Next.js names its root span "GET /api/users/[id]".
            _, _, route = name.partition(" ")
        if not route.startswith("/"):
            return "unknown"
        return "api" if route.startswith(self.api_prefixes) else "page"

    def aggregate(
        self, resources: Iterator[tuple[dict[str, Any], list[Span]]], weight: float
    ) -> TraceBatch:
        b = TraceBatch(self.duration.batch())
        observe = b.hist.observe
        skipped = b.skipped
        for res, spans in resources:
            for sp in spans:
                b.spans += 1
                if sp.kind not in SERVER_KINDS:
                    continue
                seconds = (sp.end_ns - sp.start_ns) / 1e9
                if not (seconds >= 0 and math.isfinite(seconds)) or sp.start_ns <= 0:
                    skipped["bad_time"] = skipped.get("bad_time", 0) + 1
                    continue
                status = L.status_class(_first(sp.attrs, res, STATUS_KEYS))
                if status == "unknown" and sp.status_code == STATUS_ERROR:
                    status = "error"
                key = (
                    self.projects(_first(sp.attrs, res, PROJECT_KEYS)),
                    L.environment(_first(sp.attrs, res, ENV_KEYS)),
                    L.region(_first(sp.attrs, res, REGION_KEYS)),
                    self.route_kind(sp.attrs, sp.name),
                    status,
                )
                observe(key, seconds, weight)
                b.used += 1
        return b

    def apply(self, batch: TraceBatch) -> None:
        self.duration.merge(batch.hist)

    def collectors(self) -> list[BatchHistogram]:
        return [self.duration]
