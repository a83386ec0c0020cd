"""PagerDuty v3 webhooks, as PagerDuty sends them: what a person doing something to an incident
in PagerDuty (acknowledge, resolve, reassign) makes a v3 webhook subscription deliver.

Built from PagerDuty's documentation only (developer-docs: webhooks/01-Overview.md for the
payload and event types, 04-Signatures.md for X-PagerDuty-Signature, 02-Behavior.md for
X-Webhook-Id; support.pagerduty.com/docs/webhooks for the User-Agent and
X-Webhook-Subscription headers). Strict: an event type the docs do not list, or data of the
wrong type for it, is refused here rather than sent.

Tests build deliveries with `WebhookSender` and post them wherever they like; the demo runs

    python -m fakes.pagerduty_webhooks --sink http://127.0.0.1:9790 \\
        --url http://127.0.0.1:19706/api/infrastructure/webhooks/pagerduty \\
        --secret-file <the API's pagerduty.webhook_secret_file> acknowledge --user PDEMO01="On Call"

which acts on the newest open incident of the notification sink's PagerDuty (fakes/sink.py).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from fakes.pagerduty import Incident

USER_AGENT = "PagerDuty-Webhook/V3.0"
# Every event type the v3 overview lists, and the type of its event.data.
EVENT_DATA_TYPES = {
    "incident.acknowledged": "incident",
    "incident.annotated": "incident_note",
    "incident.delegated": "incident",
    "incident.escalated": "incident",
    "incident.priority_updated": "incident",
    "incident.reassigned": "incident",
    "incident.reopened": "incident",
    "incident.resolved": "incident",
    "incident.responder.added": "incident_responder",
    "incident.responder.replied": "incident_responder",
    "incident.status_update_published": "incident_status_update",
    "incident.triggered": "incident",
    "incident.unacknowledged": "incident",
    "service.created": "service",
    "service.deleted": "service",
    "service.updated": "service",
}
# What each incident event leaves the incident's status as.
_STATUS_AFTER = {
    "incident.acknowledged": "acknowledged",
    "incident.resolved": "resolved",
    "incident.unacknowledged": "triggered",
    "incident.reopened": "triggered",
    "incident.triggered": "triggered",
}


@dataclass(frozen=True, slots=True)
class User:
    """A PagerDuty user as webhooks name them: an id and a display name (never an email)."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook request: the exact body bytes (the signature covers them) and headers."""

    body: bytes
    headers: dict[str, str]

    @property
    def payload(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc


def sign(body: bytes, secrets: tuple[str, ...]) -> str:
    """X-PagerDuty-Signature: `v1=<hex HMAC-SHA256 of the body>` per signing secret, joined by
    commas (more than one while a secret is being rotated)."""
    return ",".join(
        "v1=" + hmac.new(s.encode("utf-8"), body, hashlib.sha256).hexdigest() for s in secrets
    )


@dataclass(slots=True)
class WebhookSender:
    """A v3 webhook subscription of an account (`subdomain`.pagerduty.com): the secrets its
    deliveries are signed with and its id (X-Webhook-Subscription)."""

    secrets: tuple[str, ...]
    subscription_id: str = "PSUBWS1"
    subdomain: str = "wsinfra-demo"
    service: dict[str, Any] = field(
        default_factory=lambda: {"id": "PSVCWS1", "summary": "wsinfra Alertmanager"}
    )

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("a subscription signs with at least one secret")

    def _reference(self, kind: str, oid: str, summary: str | None) -> dict[str, Any]:
        plural = {"user": "users", "service": "services", "incident": "incidents"}[kind]
        return {
            "html_url": f"https://{self.subdomain}.pagerduty.com/{plural}/{oid}",
            "id": oid,
            "self": f"https://api.pagerduty.com/{plural}/{oid}",
            "summary": summary,
            "type": f"{kind}_reference",
        }

    def user(self, user: User) -> dict[str, Any]:
        return self._reference("user", user.id, user.name)

    def incident_data(self, incident: Incident) -> dict[str, Any]:
        """The `incident` event data type, field for field as the overview shows it."""
        return {
            "id": incident.id,
            "type": "incident",
            "self": f"https://api.pagerduty.com/incidents/{incident.id}",
            "html_url": f"https://{self.subdomain}.pagerduty.com/incidents/{incident.id}",
            "number": incident.number,
            "status": incident.status,
            "incident_key": incident.incident_key,
            "created_at": incident.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "title": incident.title,
            "service": self._reference("service", self.service["id"], str(self.service["summary"])),
            "assignees": list(incident.assignees),
            "escalation_policy": {
                "html_url": f"https://{self.subdomain}.pagerduty.com/escalation_policies/PEPWS01",
                "id": "PEPWS01",
                "self": "https://api.pagerduty.com/escalation_policies/PEPWS01",
                "summary": "Default",
                "type": "escalation_policy_reference",
            },
            "teams": [],
            "priority": None,
            "urgency": incident.urgency,
            "conference_bridge": None,
            "resolve_reason": None,
        }

    def event(
        self,
        event_type: str,
        data: dict[str, Any],
        agent: dict[str, Any] | None,
        *,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
        webhook_id: str | None = None,
    ) -> Delivery:
        """Any documented event, as a signed delivery. `event_id` and `webhook_id` are fresh
        unless given (a retry repeats both)."""
        kind = EVENT_DATA_TYPES.get(event_type)
        if kind is None:
            raise ValueError(f"{event_type!r} is not a v3 event type PagerDuty documents")
        if data.get("type") != kind:
            raise ValueError(
                f"{event_type} carries data of type {kind!r}, not {data.get('type')!r}"
            )
        when = occurred_at or datetime.now(UTC)
        payload = {
            "event": {
                "id": event_id or str(uuid.uuid4()),
                "event_type": event_type,
                "resource_type": event_type.split(".", 1)[0],
                "occurred_at": when.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
                "agent": agent,
                "client": None,
                "data": data,
            }
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return Delivery(
            body,
            {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-PagerDuty-Signature": sign(body, self.secrets),
                "X-Webhook-Id": webhook_id or str(uuid.uuid4()),
                "X-Webhook-Subscription": self.subscription_id,
            },
        )

    def incident_event(
        self, event_type: str, incident: Incident, by: User | None, **kw: Any
    ) -> Delivery:
        """A person (`by`; None: PagerDuty itself) changed `incident`: its status follows the
        event, and the delivery describes the incident after it."""
        if EVENT_DATA_TYPES.get(event_type) != "incident":
            raise ValueError(f"{event_type} does not carry an incident")
        incident.status = _STATUS_AFTER.get(event_type, incident.status)
        return self.event(
            event_type,
            self.incident_data(incident),
            None if by is None else self.user(by),
            **kw,
        )

    def acknowledged(self, incident: Incident, by: User | None, **kw: Any) -> Delivery:
        return self.incident_event("incident.acknowledged", incident, by, **kw)

    def resolved(self, incident: Incident, by: User | None, **kw: Any) -> Delivery:
        return self.incident_event("incident.resolved", incident, by, **kw)

    def reassigned(self, incident: Incident, by: User | None, to: User, **kw: Any) -> Delivery:
        incident.assignees = [self.user(to)]
        return self.incident_event("incident.reassigned", incident, by, **kw)


async def send(client: httpx.AsyncClient, url: str, delivery: Delivery) -> httpx.Response:
    return await client.post(url, content=delivery.body, headers=delivery.headers)


# --- the demo: act on the notification sink's newest open incident ---------------------------


def _incident_from_sink(doc: dict[str, Any], key: str | None) -> Incident:
    found = [
        i
        for i in doc.get("pagerduty_incidents", [])
        if (key is None and i["status"] != "resolved") or i["incident_key"] == key
    ]
    if not found:
        raise LookupError("no such incident in the sink (an open one, or with that key)")
    i = found[-1]
    return Incident(
        id=i["id"],
        number=i["number"],
        incident_key=i["incident_key"],
        title=i["title"],
        status=i["status"],
        created_at=datetime.fromisoformat(i["created_at"]),
        urgency=i["urgency"],
        assignees=i.get("assignees", []),
    )


async def _demo(args: argparse.Namespace, secret: str) -> int:
    uid, _, name = args.user.partition("=")
    user = User(uid, name or uid)
    sender = WebhookSender((secret,))
    async with httpx.AsyncClient(timeout=10) as client:
        sink = await client.get(f"{args.sink.rstrip('/')}/api/messages")
        sink.raise_for_status()
        incident = _incident_from_sink(sink.json(), args.incident_key)
        if args.action == "acknowledge":
            delivery = sender.acknowledged(incident, user)
        elif args.action == "resolve":
            delivery = sender.resolved(incident, user)
        else:
            delivery = sender.reassigned(incident, user, user)
        resp = await send(client, args.url, delivery)
    print(
        f"{args.action} incident #{incident.number} ({incident.incident_key[:12]}…): "
        f"HTTP {resp.status_code} {resp.text.strip()}"
    )
    return 0 if resp.status_code < 300 else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fakes.pagerduty_webhooks")
    p.add_argument("--sink", required=True, help="the notification sink's base URL")
    p.add_argument("--url", required=True, help="where the webhook subscription delivers")
    p.add_argument("--secret-file", required=True, help="file holding the subscription's secret")
    p.add_argument("--incident-key", help="act on this incident (default: the newest open one)")
    p.add_argument("action", choices=["acknowledge", "resolve", "reassign"])
    p.add_argument("--user", default="PDEMO01=Demo On-Call", metavar="ID=NAME")
    args = p.parse_args(argv)
    try:
        secret = Path(args.secret_file).read_text(encoding="utf-8").strip()
        return asyncio.run(_demo(args, secret))
    except (OSError, LookupError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
