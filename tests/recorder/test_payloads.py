"""Webhook parsing: right rows from good payloads, a named reason for every bad one."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.payloads import (
    Notification,
    PayloadError,
    parse_alertmanager,
    parse_github,
    parse_vercel,
)
from tests.recorder.samples import (
    am_alert,
    am_payload,
    github_deployment_status,
    github_signature,
    vercel_event,
)


def test_alertmanager_firing_alert_becomes_a_row() -> None:
    n = parse_alertmanager(am_payload([am_alert(region="eu-west")]))
    (row,) = n.alerts
    assert row.alert_id == "a1b2c3d4e5f60718:20261125T100005.123456Z"
    assert (row.alert_type, row.severity, row.service_name, row.region) == (
        "UptimeTargetDown",
        "critical",
        "web",
        "eu-west",
    )
    assert row.alert_title == "Uptime target is down from a quorum of probe regions."
    assert row.current_metric_value == 1.0
    assert row.metric_threshold == 0.5
    assert row.triggered_at == datetime(2026, 11, 25, 10, 0, 5, 123456, tzinfo=UTC)
    assert row.resolved_at is None  # endsAt of a firing alert is not a resolution
    assert row.alert_rule["labels"]["target"] == "web"


def test_resolved_alert_has_its_end_and_the_same_id() -> None:
    firing = parse_alertmanager(am_payload([am_alert()])).alerts[0]
    resolved = parse_alertmanager(
        am_payload([am_alert(status="resolved", ends="2026-11-25T10:03:35Z")], status="resolved")
    ).alerts[0]
    assert resolved.alert_id == firing.alert_id
    assert resolved.resolved_at == datetime(2026, 11, 25, 10, 3, 35, tzinfo=UTC)


def test_unknown_severity_and_missing_service_are_kept_not_refused() -> None:
    alert = am_alert()
    alert["labels"] = {"alertname": "Custom", "severity": "page", "job": "node"}
    alert["annotations"] = {"value": "NaN"}
    (row,) = parse_alertmanager(am_payload([alert])).alerts
    assert (row.severity, row.service_name, row.alert_title, row.current_metric_value) == (
        "info",
        "node",
        "Custom",
        None,
    )


@pytest.mark.parametrize(
    ("mutate", "reason", "status"),
    [
        (lambda d: b"{not json", "invalid_json", 400),
        (lambda d: json.dumps([1]).encode(), "invalid_payload", 422),
        (lambda d: json.dumps({**d, "version": "3"}).encode(), "unsupported_version", 422),
        (
            lambda d: json.dumps({k: v for k, v in d.items() if k != "alerts"}).encode(),
            "invalid_payload",
            422,
        ),
        (lambda d: json.dumps({**d, "status": "weird"}).encode(), "invalid_payload", 422),
    ],
)
def test_alertmanager_bad_payloads(mutate, reason: str, status: int) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(am_payload([am_alert()]))
    with pytest.raises(PayloadError) as err:
        parse_alertmanager(mutate(doc))
    assert (err.value.reason, err.value.status) == (reason, status)


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"startsAt": "yesterday"}, "alerts[1].startsAt: 'yesterday' is not an RFC 3339 time"),
        ({"fingerprint": ""}, "alerts[1].fingerprint: empty or over 64 characters"),
        ({"fingerprint": "f" * 65}, "alerts[1].fingerprint: empty or over 64 characters"),
        ({"labels": {"x": 1}}, "alerts[1].labels: missing or not a string map"),
        (
            {"startsAt": "0001-01-01T00:00:00+01:00"},
            "alerts[1].startsAt: '0001-01-01T00:00:00+01:00' is out of range in UTC",
        ),
        (
            {"annotations": {"summary": "a\x00b"}},
            "alerts[1].annotations.summary: contains a NUL character",
        ),
        (
            {"annotations": {"summary": "\ud800"}},
            "alerts[1].annotations.summary: contains a lone surrogate (not valid Unicode)",
        ),
    ],
)
def test_a_bad_alert_is_dead_lettered_and_the_rest_kept(
    change: dict[str, object], detail: str
) -> None:
    good = am_alert()
    doc = json.loads(am_payload([good, {**good, **change}, {**good, "fingerprint": "other"}]))
    n = parse_alertmanager(json.dumps(doc).encode())
    assert [a.alert_id.split(":")[0] for a in n.alerts] == [good["fingerprint"], "other"]
    ((index, reason, why, kept),) = [(r.index, r.reason, r.detail, r.alert) for r in n.rejected]
    assert (index, reason, why) == (1, "invalid_payload", detail)
    # What is kept can be stored as JSONB: no NUL, no lone surrogate.
    json.dumps(kept, ensure_ascii=False).encode("utf-8")
    assert "\x00" not in json.dumps(kept, ensure_ascii=False)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"version": NaN}', "NaN is not JSON (RFC 8259 has no NaN or Infinity)"),
        (b'{"version": -Infinity}', "-Infinity is not JSON (RFC 8259 has no NaN or Infinity)"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 32 levels"),
        (b'{"version": "4", "x": ' + b"[" * 40 + b"]" * 40 + b"}", "nested deeper than 32 levels"),
    ],
)
def test_non_json_literals_and_deep_nesting_are_400(body: bytes, detail: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse_alertmanager(body)
    assert (err.value.reason, err.value.status, err.value.detail) == ("invalid_json", 400, detail)


def test_top_level_fields_must_be_storable_and_counts_fit_their_column() -> None:
    doc = json.loads(am_payload([am_alert()]))
    for change in ({"receiver": "a\x00"}, {"groupKey": "\udfff"}, {"truncatedAlerts": 2**31}):
        with pytest.raises(PayloadError) as err:
            parse_alertmanager(json.dumps({**doc, **change}).encode())
        assert (err.value.reason, err.value.status) == ("invalid_payload", 422)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(doc=json_values)
def test_any_json_is_parsed_or_refused_with_a_reason(doc: object) -> None:
    try:
        result = parse_alertmanager(json.dumps(doc).encode())
    except PayloadError as exc:
        assert exc.reason in ("invalid_json", "invalid_payload", "unsupported_version")
        assert 400 <= exc.status < 500
    else:
        assert isinstance(result, Notification)


@settings(max_examples=300, deadline=None)
@given(
    alert=st.dictionaries(
        st.sampled_from(
            ["status", "labels", "annotations", "startsAt", "endsAt", "fingerprint", "x"]
        ),
        json_values,
    )
)
def test_any_alert_object_is_parsed_or_refused(alert: dict[str, object]) -> None:
    body = json.dumps(
        {"version": "4", "receiver": "r", "groupKey": "g", "status": "firing", "alerts": [alert]}
    ).encode()
    try:
        parse_alertmanager(body)
    except PayloadError as exc:
        assert exc.status in (400, 422)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_any_parser(raw: bytes) -> None:
    for parse in (
        parse_alertmanager,
        parse_vercel,
        lambda b: parse_github("deployment", "d", b, "application/json"),
    ):
        with contextlib.suppress(PayloadError):
            parse(raw)


def test_vercel_lifecycle_events() -> None:
    delivery, kind, created = parse_vercel(vercel_event("deployment.created"))
    assert (delivery, kind) == ("uHP1oYvhXr4ZJ2bR0s6Ed8qK", "deployment.created")
    assert created is not None
    assert (created.deployment_id, created.status, created.environment) == (
        "vercel:dpl_2euZBFqxYdDMDG1jTrHFnNZ2eUVa",
        "in_progress",
        "production",
    )
    assert (created.git_branch, created.git_commit_hash) == (
        "main",
        "de8b89f1a2b3c4d5e6f708192a3b4c5d6e7f8091",
    )
    assert created.deployment_url == "https://web-9jaeg38me-acme.vercel.app"
    assert created.started_at == created.at
    _, _, failed = parse_vercel(vercel_event("deployment.error"))
    assert failed is not None
    assert (failed.status, failed.error_message) == ("failed", "build or deployment failed")
    _, _, preview = parse_vercel(vercel_event("deployment.created", target=None))
    assert preview is not None
    assert preview.environment == "preview"
    assert parse_vercel(vercel_event("deployment.check-rerequested"))[2] is None


def test_github_states_and_form_encoding() -> None:
    ev = parse_github(
        "deployment_status", "d1", github_deployment_status("success"), "application/json"
    )
    assert ev is not None
    assert (ev.deployment_id, ev.status, ev.environment) == (
        "github:Codertocat/Hello-World:145988746",
        "success",
        "production",
    )
    assert ev.deployment_url == "https://hello-world.example.com"
    assert (
        parse_github(
            "deployment_status", "d", github_deployment_status("inactive"), "application/json"
        )
        is None
    )
    failed = parse_github(
        "deployment_status", "d", github_deployment_status("failure"), "application/json"
    )
    assert failed is not None
    assert failed.status == "failed"
    from urllib.parse import urlencode

    form = urlencode({"payload": github_deployment_status("queued").decode()}).encode()
    queued = parse_github("deployment_status", "d", form, "application/x-www-form-urlencoded")
    assert queued is not None
    assert queued.status == "in_progress"
    with pytest.raises(PayloadError, match="unknown state"):
        parse_github(
            "deployment_status", "d", github_deployment_status("exploded"), "application/json"
        )


def test_github_documented_signature_vector() -> None:
    # From GitHub's docs: secret "It's a Secret to Everybody", payload "Hello, World!".
    assert github_signature(b"It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
