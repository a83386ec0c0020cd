"""Notifications as Alertmanager builds them, for groups of any size: the template data of a
webhook (status, alerts, group/common labels and annotations), common parts computed as
Alertmanager computes them (what every alert of the group shares)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

EXTERNAL_URL = "http://127.0.0.1:9093"
START = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
NEVER = "0001-01-01T00:00:00Z"

TARGET_DOWN = {
    "summary": "Uptime target is down from a quorum of probe regions.",
    "remediation": (
        "1. Open the endpoint yourself; check the Vercel status page and the latest deployment.\n"
        "2. If a deploy preceded it, roll back (Vercel: Instant Rollback to the previous "
        "production deployment).\n"
        "3. Reason connect/timeout: platform or DNS down; status: app errors, check function "
        "logs; tls: certificate."
    ),
    "runbook_url": "http://127.0.0.1:19700/runbooks/UptimeTargetDown.md#uptimetargetdown",
    "threshold": "0.5",
}
LOCATION_FAILING = {
    "summary": "A probe region cannot reach the target (the others can).",
    "remediation": "1. Check the region's network path.",
    "runbook_url": (
        "http://127.0.0.1:19700/runbooks/UptimeProbeLocationFailing.md#uptimeprobelocationfailing"
    ),
}


def _time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def alert(i: int, *, resolved: bool, alertname: str = "UptimeTargetDown") -> dict[str, Any]:
    """The i-th alert of a big outage: targets web-000, web-001, ... of service web."""
    target = f"web-{i:03d}"
    region = ("us-east", "eu-west")[i % 2]
    starts = START + timedelta(seconds=5 * i)
    shared = TARGET_DOWN if alertname == "UptimeTargetDown" else LOCATION_FAILING
    labels = {"alertname": alertname, "severity": "critical", "service": "web", "target": target}
    if alertname != "UptimeTargetDown":
        labels |= {"region": region}
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": {
            **shared,
            "description": f"{target} (web) fails from 100% of probe regions. "
            f"eu-west: connect. us-east: connect.",
            "value": "1",
        },
        "startsAt": _time(starts),
        "endsAt": _time(starts + timedelta(minutes=3, seconds=30)) if resolved else NEVER,
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": f"{i:016x}",
    }


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def notification(
    alerts: list[dict[str, Any]], receiver: str = "critical", group_by: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The data Alertmanager hands its templates for one notification of `alerts`."""
    common_labels = _common([a["labels"] for a in alerts])
    keys = group_by or ("alertname", "service")
    return {
        "receiver": receiver,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": alerts,
        "groupLabels": {k: common_labels[k] for k in keys if k in common_labels},
        "commonLabels": common_labels,
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": EXTERNAL_URL,
    }


def group(kind: str, n: int) -> dict[str, Any]:
    """firing: n firing; resolved: n recovered; mixed: every other one recovered;
    differing: n firing of two alert names (their annotations differ)."""
    if kind == "firing":
        alerts = [alert(i, resolved=False) for i in range(n)]
    elif kind == "resolved":
        alerts = [alert(i, resolved=True) for i in range(n)]
    elif kind == "mixed":
        alerts = [alert(i, resolved=i % 2 == 1) for i in range(n)]
    elif kind == "differing":
        alerts = [
            alert(
                i,
                resolved=False,
                alertname=("UptimeTargetDown", "UptimeProbeLocationFailing")[i % 2],
            )
            for i in range(n)
        ]
        return notification(alerts, group_by=("service",))
    else:
        raise ValueError(kind)
    return notification(alerts)
