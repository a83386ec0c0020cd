"""Parse inbound webhooks into rows: Alertmanager (v4), Vercel deployments, GitHub deployments.

Everything here is pure: bytes and headers in, frozen dataclasses out, or a PayloadError that
names what is wrong. Nothing is written unless a whole payload parses.
"""

from __future__ import annotations

import math
import re
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from common.ingress import (
    BadRequest,
    find_bad_string,
    fits_int,
    may_hold_bad_strings,
    scrub,
    strict_json,
)
from schema.rows import SEVERITIES, AlertRow, DeploymentEvent, Notification, RejectedAlert

_FRACTION = re.compile(r"(\.\d+)")


class PayloadError(BadRequest):
    """A webhook payload we cannot use (see common.ingress.BadRequest)."""


# The Alertmanager receiver that mirrors every alert into the record and notifies no one
# (alertmanager/alertmanager.yml). Every other receiver that posts here also notifies a person:
# it carries this webhook beside its Slack or PagerDuty integrations, so Alertmanager itself
# (routing, inhibitions, silences, time intervals) decides when a person was notified, and the
# recorder learns it from the payload's `receiver`. tests/unit/test_alert_routing.py holds the
# committed config to that; docs/alert-routing.md explains it.
RECORD_ONLY_RECEIVERS = frozenset({"recorder"})

# Alertmanager's fingerprints are 16 hex digits; the alert_id column (VARCHAR(200)) holds the
# fingerprint and the start time, so anything much longer is not an Alertmanager fingerprint.
MAX_FINGERPRINT = 64


def load_json(body: bytes) -> Any:
    try:
        return strict_json(body)
    except BadRequest as exc:
        raise PayloadError(exc.reason, exc.detail, exc.status) from None


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise PayloadError("invalid_payload", f"{where}{key}: missing or not a string")
    return value


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise PayloadError("invalid_payload", f"{where}: missing or not a timestamp")
    text = value.replace("Z", "+00:00")
    # Go writes up to nanoseconds; Python parses up to microseconds.
    text = _FRACTION.sub(lambda m: m.group(1)[:7], text)
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(
            "invalid_payload", f"{where}: {value[:64]!r} is not an RFC 3339 time"
        ) from None
    if ts.tzinfo is None:
        raise PayloadError("invalid_payload", f"{where}: {value[:64]!r} has no time zone")
    try:
        return ts.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+01:00 and 9999-12-31T23:59:59-01:00 exist only outside UTC's range.
        raise PayloadError(
            "invalid_payload", f"{where}: {value[:64]!r} is out of range in UTC"
        ) from None


def _number(value: Any) -> float | None:
    """A live value or threshold from an annotation; anything unparseable is unknown, not zero."""
    if value is None or isinstance(value, bool):
        return None
    try:
        num = float(str(value).strip())
    except ValueError:
        return None
    return num if math.isfinite(num) else None


def parse_alertmanager(body: bytes) -> Notification:
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise PayloadError("invalid_payload", "top level must be an object")
    if doc.get("version") != "4":
        raise PayloadError(
            "unsupported_version", f'version {doc.get("version")!r} is not supported (want "4")'
        )
    receiver = _str(doc, "receiver", "")
    group_key = _str(doc, "groupKey", "")
    status = _str(doc, "status", "")
    # Any unstorable string outside the alerts refuses the notification; inside an alert, only
    # that alert (below).
    suspect = may_hold_bad_strings(body)
    why = suspect and find_bad_string({k: v for k, v in doc.items() if k != "alerts"})
    if why:
        raise PayloadError("invalid_payload", why)
    if status not in ("firing", "resolved"):
        raise PayloadError("invalid_payload", f"status {status!r} must be firing or resolved")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("invalid_payload", "alerts: missing or not a list")
    truncated = doc.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or not fits_int(truncated):
        raise PayloadError("invalid_payload", "truncatedAlerts: not a 32-bit integer")
    # One bad alert never blocks its batch: the others are stored, the bad one is kept with its
    # reason in the dead-letter table (a 4xx would drop the whole group's alerts for good).
    rows: list[AlertRow] = []
    rejected: list[RejectedAlert] = []
    for i, alert in enumerate(alerts):
        try:
            rows.append(_alert_row(alert, i, suspect))
        except PayloadError as exc:
            rejected.append(RejectedAlert(i, exc.reason, exc.detail, scrub(alert)))
    return Notification(
        receiver,
        group_key,
        status,
        truncated,
        tuple(rows),
        scrub(doc) if suspect else doc,
        tuple(rejected),
        notified=receiver not in RECORD_ONLY_RECEIVERS,
    )


def _alert_row(alert: Any, i: int, suspect: bool = True) -> AlertRow:
    where = f"alerts[{i}]."
    if not isinstance(alert, dict):
        raise PayloadError("invalid_payload", f"alerts[{i}]: not an object")
    why = suspect and find_bad_string(alert, f"alerts[{i}]")
    if why:
        raise PayloadError("invalid_payload", why)
    labels = alert.get("labels")
    annotations = alert.get("annotations") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise PayloadError("invalid_payload", f"{where}labels: missing or not a string map")
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        raise PayloadError("invalid_payload", f"{where}annotations: not a string map")
    state = _str(alert, "status", where)
    if state not in ("firing", "resolved"):
        raise PayloadError(
            "invalid_payload", f"{where}status: {state!r} must be firing or resolved"
        )
    fingerprint = _str(alert, "fingerprint", where)
    if not fingerprint or len(fingerprint) > MAX_FINGERPRINT:
        raise PayloadError(
            "invalid_payload", f"{where}fingerprint: empty or over {MAX_FINGERPRINT} characters"
        )
    alertname = labels.get("alertname")
    if not alertname:
        raise PayloadError("invalid_payload", f"{where}labels.alertname: missing")
    starts = _time(alert.get("startsAt"), f"{where}startsAt")
    # endsAt is only a resolution time when the alert says it is resolved; while firing it is
    # Alertmanager's guess of when the alert would time out.
    ends = _time(alert.get("endsAt"), f"{where}endsAt") if state == "resolved" else None
    severity = labels.get("severity", "")
    return AlertRow(
        # One row per alert instance: the same alert firing again later is a new instance.
        alert_id=f"{fingerprint}:{starts.strftime('%Y%m%dT%H%M%S.%fZ')}",
        alert_type=alertname[:100],
        # An alert outside our severity scale is kept, as the mildest level, with its raw labels.
        severity=severity if severity in SEVERITIES else "info",
        service_name=(labels.get("service") or labels.get("job") or "unknown")[:100],
        region=(labels.get("region") or None) and labels["region"][:50],
        alert_title=(annotations.get("summary") or alertname)[:500],
        alert_description=annotations.get("description") or annotations.get("summary") or alertname,
        metric_threshold=_number(annotations.get("threshold")),
        current_metric_value=_number(annotations.get("value")),
        alert_rule={
            "labels": labels,
            "annotations": annotations,
            "generatorURL": alert.get("generatorURL", ""),
        },
        triggered_at=starts,
        resolved_at=ends,
    )


# --- Vercel -------------------------------------------------------------------------------

_VERCEL_STATUS = {
    "deployment.created": "in_progress",
    "deployment.succeeded": "success",
    "deployment.ready": "success",
    "deployment.promoted": "success",
    "deployment.error": "failed",
    "deployment.canceled": "failed",
    # Listed only by a third party (UNCONFIRMED in ../shared/apis.md); handled if it ever comes.
    "deployment.rollback": "rolled_back",
}


def parse_vercel(body: bytes) -> tuple[str, str, DeploymentEvent | None]:
    """(delivery id, event type, event); the event is None for types we do not record."""
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise PayloadError("invalid_payload", "top level must be an object")
    why = may_hold_bad_strings(body) and find_bad_string(doc)
    if why:
        raise PayloadError("invalid_payload", why)
    kind = _str(doc, "type", "")
    delivery = _str(doc, "id", "")
    if not delivery:
        raise PayloadError("invalid_payload", "id: empty")
    if kind not in _VERCEL_STATUS:
        return delivery, kind, None
    payload = doc.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("deployment"), dict):
        raise PayloadError("invalid_payload", "payload.deployment: missing")
    dep = payload["deployment"]
    dep_id = _str(dep, "id", "payload.deployment.")
    created = doc.get("createdAt")
    if not isinstance(created, int | float) or isinstance(created, bool):
        raise PayloadError("invalid_payload", "createdAt: missing or not a number (ms epoch)")
    meta = dep.get("meta") if isinstance(dep.get("meta"), dict) else {}
    branch = (
        meta.get("githubCommitRef")
        or meta.get("gitlabCommitRef")
        or meta.get("bitbucketCommitRef")
        or "unknown"
    )
    commit = (
        meta.get("githubCommitSha")
        or meta.get("gitlabCommitSha")
        or meta.get("bitbucketCommitSha")
        or "unknown"
    )
    target = payload.get("target")
    environment = (
        "production"
        if kind == "deployment.promoted"
        else {"production": "production", "staging": "staging"}.get(
            target if isinstance(target, str) else "", "preview"
        )
    )
    url = dep.get("url")
    status = _VERCEL_STATUS[kind]
    try:
        at = datetime.fromtimestamp(created / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise PayloadError("invalid_payload", "createdAt: out of range") from None
    return (
        delivery,
        kind,
        _checked(
            DeploymentEvent(
                provider="vercel",
                delivery_id=delivery,
                event=kind,
                deployment_id=f"vercel:{dep_id}"[:200],
                environment=environment,
                git_branch=str(branch)[:200],
                git_commit_hash=str(commit)[:40],
                status=status,
                deployment_url=f"https://{url}"[:500] if isinstance(url, str) and url else None,
                error_message={
                    "deployment.error": "build or deployment failed",
                    "deployment.canceled": "canceled",
                }.get(kind),
                at=at,
                started_at=at if kind == "deployment.created" else None,
            )
        ),
    )


# --- GitHub -------------------------------------------------------------------------------

_GITHUB_STATE = {
    "pending": "in_progress",
    "queued": "in_progress",
    "in_progress": "in_progress",
    "success": "success",
    "failure": "failed",
    "error": "failed",
}


def parse_github(
    event: str, delivery: str, body: bytes, content_type: str
) -> DeploymentEvent | None:
    if content_type == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qs

        fields = parse_qs(body.decode("utf-8", "replace"))
        if "payload" not in fields:
            raise PayloadError("invalid_payload", "form body without a payload field", 400)
        body = fields["payload"][0].encode()
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise PayloadError("invalid_payload", "top level must be an object")
    why = find_bad_string(doc)
    if why:
        raise PayloadError("invalid_payload", why)
    if event not in ("deployment", "deployment_status"):
        return None
    dep = doc.get("deployment")
    if not isinstance(dep, dict):
        raise PayloadError("invalid_payload", "deployment: missing")
    dep_id = dep.get("id")
    if not isinstance(dep_id, int):
        raise PayloadError("invalid_payload", "deployment.id: missing or not an integer")
    repo_doc = doc.get("repository")
    repo: dict[str, Any] = repo_doc if isinstance(repo_doc, dict) else {}
    repo_name = repo.get("full_name") or str(repo.get("id", "unknown"))
    env_name = str(dep.get("environment") or "").lower()
    environment = env_name if env_name in ("production", "staging") else "preview"
    created = _time(dep.get("created_at"), "deployment.created_at")
    if event == "deployment":
        status, at, url, error = "in_progress", created, None, None
    else:
        ds = doc.get("deployment_status")
        if not isinstance(ds, dict):
            raise PayloadError("invalid_payload", "deployment_status: missing")
        state = _str(ds, "state", "deployment_status.")
        if state == "inactive":
            # Superseded by a newer deployment: not an outcome of this one; nothing to change.
            return None
        if state not in _GITHUB_STATE:
            raise PayloadError(
                "invalid_payload", f"deployment_status.state: unknown state {state!r}"
            )
        status = _GITHUB_STATE[state]
        at = _time(ds.get("updated_at") or ds.get("created_at"), "deployment_status.updated_at")
        url = ds.get("environment_url") or ds.get("target_url") or None
        error = str(ds.get("description") or state) if status == "failed" else None
    return _checked(
        DeploymentEvent(
            provider="github",
            delivery_id=delivery,
            event=event,
            deployment_id=f"github:{repo_name}:{dep_id}"[:200],
            environment=environment,
            git_branch=str(dep.get("ref") or "unknown")[:200],
            git_commit_hash=str(dep.get("sha") or "unknown")[:40],
            status=status,
            deployment_url=str(url)[:500] if url else None,
            error_message=error,
            at=at,
            started_at=created,
        )
    )


def _checked(event: DeploymentEvent) -> DeploymentEvent:
    """Every text we would store is storable (no NUL, no lone surrogate)."""
    for f in fields(event):
        value = getattr(event, f.name)
        if isinstance(value, str):
            why = find_bad_string(value, f.name)
            if why:
                raise PayloadError("invalid_payload", why)
    return event
