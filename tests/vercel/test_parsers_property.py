"""Arbitrary JSON into every parser: each either accepts it or refuses it with DrainError/None
(a 400: numbers and times out of any range are refused whole, before anything is counted)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters.vercel import deployments
from exporters.vercel.drain_body import DrainError, records
from exporters.vercel.labels import Projects, Routes
from exporters.vercel.log_drain import LogDrain
from exporters.vercel.speed_insights_drain import SpeedInsightsDrain
from exporters.vercel.trace_drain import TraceDrain, resources_from_json, resources_from_protobuf

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
# Objects with the keys our parsers look at, holding anything.
KEYS = [
    "projectId",
    "proxy",
    "statusCode",
    "region",
    "vercelCache",
    "pathType",
    "requestId",
    "level",
    "source",
    "environment",
    "wafAction",
    "schema",
    "metricType",
    "value",
    "route",
    "country",
    "deviceType",
    "uid",
    "createdAt",
    "created",
    "readyState",
    "state",
    "target",
    "buildingAt",
    "ready",
    "meta",
    "id",
    "timestamp",
    "vercelEnvironment",
]
record_like = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=10)
PROJECTS = Projects({"prj_1": "web"})
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(record_like | st.dictionaries(st.text(max_size=5), json_values), max_size=8))
def test_log_aggregation_takes_any_object(items: list[dict[str, Any]]) -> None:
    drain = LogDrain(PROJECTS)
    try:
        batch = drain.aggregate(items, 1.0)
    except DrainError as exc:
        assert (exc.status, exc.outcome) == (400, "out_of_range")
        assert len(drain._lines) == len(drain._recent) == 0  # refused before any id is kept
        return
    for key, n in batch.requests.items():
        assert all(isinstance(v, str) for v in key)
        assert n > 0


@FAST
@given(st.lists(record_like, max_size=8))
def test_speed_insights_aggregation_takes_any_object(items: list[dict[str, Any]]) -> None:
    d = SpeedInsightsDrain(PROJECTS, Routes([], 5), 0.001)
    try:
        batch = d.aggregate(items, 1.0)
    except DrainError as exc:
        assert (exc.status, exc.outcome) == (400, "out_of_range")
        return
    d.apply(batch)
    d.seconds.collect()


@FAST
@given(
    json_values
    | st.dictionaries(
        st.sampled_from(["resourceSpans", "scopeSpans", "spans", "resource"]), json_values
    )
)
def test_otlp_json_is_accepted_or_refused_cleanly(doc: Any) -> None:
    try:
        TraceDrain(PROJECTS, ["/api/"]).aggregate(resources_from_json(doc), 1.0)
    except DrainError as exc:
        assert exc.status == 400


@FAST
@given(st.binary(max_size=300))
def test_otlp_protobuf_is_accepted_or_refused_cleanly(body: bytes) -> None:
    try:
        TraceDrain(PROJECTS, ["/api/"]).aggregate(resources_from_protobuf(body), 1.0)
    except DrainError as exc:
        assert exc.status == 400


@FAST
@given(json_values)
def test_drain_framing_refuses_all_but_objects(doc: Any) -> None:
    for body in (
        json.dumps(doc).encode(),
        json.dumps(doc).encode() + b"\n" + json.dumps(doc).encode(),
    ):
        try:
            out = records(body)
        except DrainError as exc:
            assert exc.status == 400
        else:
            assert all(isinstance(r, dict) for r in out)


@FAST
@given(st.binary(max_size=200))
def test_drain_framing_survives_bytes(body: bytes) -> None:
    with contextlib.suppress(DrainError):
        records(body)


@FAST
@given(json_values | record_like)
def test_deployment_parser_takes_anything(doc: Any) -> None:
    d = deployments.parse(doc)
    if d is not None:
        assert d.uid
        assert d.created_ms > 0
        assert d.target in ("production", "preview", "staging", "other")


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    doc=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "deployments": st.lists(record_like | json_values, max_size=5),
                "pagination": json_values,
            }
        ),
        st.fixed_dictionaries(
            {
                "deployments": st.lists(record_like, max_size=5),
                "pagination": st.fixed_dictionaries({"next": json_values}),
            }
        ),
    )
)
def test_any_api_answer_leaves_the_poller_serving(doc: Any, tmp_path_factory: Any) -> None:
    import asyncio

    import httpx

    from exporters.vercel.app import VercelExporter
    from tests.vercel.helpers import SimClock, load, render, write_config

    body = json.dumps(doc).encode()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    cfg, secrets = load(write_config(tmp_path_factory.mktemp("cfg")))
    clock = SimClock()

    async def go() -> str:
        e = VercelExporter(cfg, secrets, transport=transport, clock=clock, sleep=clock.sleep)
        assert e.deployments is not None
        await e.deployments.poll()  # True or False, never an exception
        await e.aclose()
        return render(e).decode()

    text = asyncio.run(go())
    assert "vercel_up" in text
