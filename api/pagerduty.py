"""POST /api/infrastructure/webhooks/pagerduty: PagerDuty v3 webhooks, so that an incident
acknowledged, resolved or reassigned in PagerDuty reaches the alert rows it paged for.

Order of checks, each refusal before anything later runs (docs/operator-api.md, "Acknowledgements
from PagerDuty", says which PagerDuty fields are relied on and which could not be confirmed):

1. PagerDuty webhooks configured (else 404), an X-PagerDuty-Signature header (else 401), a body
   of at most 256 KiB (else 413), and a `v1=` signature in the header that is the HMAC-SHA256
   of the raw body with the subscription's secret, compared in constant time (else 401). Nothing
   unsigned reaches a parser or the database.
2. JSON (400), of the documented shape (422). Events other than incident.acknowledged,
   incident.resolved and incident.reassigned are answered 202 "ignored", without the database.
3. One transaction as the PagerDuty machine user, under row-level security: the event id is
   claimed (a redelivery finds it: 202 "duplicate", nothing written), the incident's alert rows
   are found through the dedup key Alertmanager gave PagerDuty (see incident_rows), and each is
   written and audited. No row: 202 "unmatched". Database or Alertmanager trouble: 503/502 with
   nothing kept, which PagerDuty retries.

An acknowledgement from PagerDuty creates no Alertmanager silence (PUT acknowledge does): PagerDuty
has already stopped paging for the incident, and a silenced alert's resolution is never notified
(prometheus/alertmanager#226), which would keep both the PagerDuty incident and the recorder's
row open after the alert ends.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from aiohttp import web

from api.alerts import TABLE, Undo, resolve_locked, take_back
from api.auth import Identity
from api.errors import ApiError
from api.notices import acknowledgement_notice, tell_ops
from api.state import REQUEST_ID, SERVICES, PagerDutySettings, Services
from common.ingress import (
    BadRequest,
    header_bytes,
    may_hold_bad_strings,
    require_content_type,
    scrub,
    strict_json,
)
from schema import writes

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-PagerDuty-Signature"
# PagerDuty drops every webhook over 256 KB (its webhook Behavior docs, "Size Limit"): nothing
# larger can be PagerDuty's. Read without aiohttp's client_max_size, which is sized for the
# API's own small bodies.
MAX_BODY_BYTES = 256 * 1024
# The incident events that change something here; every other event type is acknowledged and
# ignored.
ACTED_ON = ("incident.acknowledged", "incident.resolved", "incident.reassigned")
_ACTIONS = {
    "incident.acknowledged": "alert.acknowledge",
    "incident.resolved": "alert.resolve",
    "incident.reassigned": "alert.reassign",
}
# event.id and event_type are stored in pagerduty_webhook_events (VARCHAR(100)); the incident key
# Alertmanager sets is 64 hex digits, and PagerDuty's allow 255 characters.
MAX_ID = 100
MAX_KEY = 255


# --- the payload (PagerDuty's v3 webhook: docs/webhooks/01-Overview.md) ---------------------


@dataclass(frozen=True, slots=True)
class Reference:
    """A PagerDuty object reference (a user_reference for a person): id, type, summary (the
    display name) and html_url. No email: the docs' references carry none."""

    id: str | None
    type: str | None
    summary: str | None
    html_url: str | None

    def as_json(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "type": self.type,
            "summary": self.summary,
            "html_url": self.html_url,
        }


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    event_id: str
    event_type: str
    occurred_at: datetime | None
    # Who or what acted (event.agent); None when the payload names nobody.
    agent: Reference | None
    incident_id: str
    # event.data.incident_key: for an Events API v2 incident, the dedup_key it was triggered with.
    incident_key: str | None
    number: int | None
    title: str | None
    html_url: str | None
    assignees: tuple[Reference, ...]


@dataclass(frozen=True, slots=True)
class Ignored:
    event_id: str
    event_type: str


def _invalid(reason: str) -> ApiError:
    return ApiError("invalid_request", reason)


def _text(value: Any, limit: int = 1000) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _reference(value: Any) -> Reference | None:
    if not isinstance(value, dict):
        return None
    return Reference(
        _text(value.get("id"), MAX_ID),
        _text(value.get("type"), MAX_ID),
        _text(value.get("summary")),
        _text(value.get("html_url")),
    )


def _when(value: Any) -> datetime | None:
    """event.occurred_at ("an ISO 8601 datetime"); None when absent or unreadable (it is only
    recorded, never decided on)."""
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts.astimezone(UTC) if ts.tzinfo is not None else None


def _required(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise _invalid(f"{where}{key}: missing, empty or longer than {MAX_ID} characters")
    return value


def parse_event(doc: Any) -> IncidentEvent | Ignored:
    """The one event of a v3 webhook payload (`{"event": {...}}`); an ApiError (422) when a
    field relied on is missing or of the wrong type. Fields not relied on are not checked."""
    if not isinstance(doc, dict) or not isinstance(doc.get("event"), dict):
        raise _invalid("event: missing or not an object")
    event: dict[str, Any] = doc["event"]
    event_id = _required(event, "id", "event.")
    event_type = _required(event, "event_type", "event.")
    if event_type not in ACTED_ON:
        return Ignored(event_id, event_type)
    data = event.get("data")
    if not isinstance(data, dict) or data.get("type") != "incident":
        raise _invalid(f"event.data: an {event_type} event carries an incident (type incident)")
    key = data.get("incident_key")
    number = data.get("number")
    assignees = data.get("assignees")
    return IncidentEvent(
        event_id=event_id,
        event_type=event_type,
        occurred_at=_when(event.get("occurred_at")),
        agent=_reference(event.get("agent")),
        incident_id=_required(data, "id", "event.data."),
        incident_key=key if isinstance(key, str) and 0 < len(key) <= MAX_KEY else None,
        number=number if isinstance(number, int) and not isinstance(number, bool) else None,
        title=_text(data.get("title")),
        html_url=_text(data.get("html_url")),
        assignees=tuple(
            r for r in map(_reference, assignees if isinstance(assignees, list) else ()) if r
        ),
    )


def signatures(header: bytes) -> list[bytes]:
    """The `v1=` signatures of an X-PagerDuty-Signature header (comma-separated: several during
    a secret rotation); other versions are skipped, as PagerDuty's verification steps say."""
    out = []
    for part in header.split(b","):
        version, sep, value = part.strip().partition(b"=")
        if sep and version == b"v1":
            out.append(value.strip().lower())
    return out


def verified(secret: bytes, body: bytes, given: list[bytes]) -> bool:
    """Whether any signature is the HMAC-SHA256 (hex) of the raw body with `secret`. Every one is
    compared, each in constant time."""
    want = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    ok = False
    for sig in given:
        ok |= hmac.compare_digest(sig, want)
    return ok


# --- from the incident to the alert rows ---------------------------------------------------
#
# Alertmanager's PagerDuty notifier (notify/pagerduty/pagerduty.go) sends
# dedup_key = key.Hash(), the sha256 hex of the notification's group key (notify.Key.Hash), and
# a group key is "<route key>:<group labels>" (dispatch: aggrGroup.GroupKey), the route key
# being the route's path of matcher sets from the root (Route.Key: parent key, "/", matchers).
# The recorder stores each notification's group key — of the recorder's route, not the pager's.
# Both routes group by the same labels (alertmanager.yml: the root's group_by), so the pager's
# group key is the recorder's with the route key swapped; its hash must equal the incident key.
# The pager's route keys are configured (pagerduty.route_keys) and checked against the committed
# alertmanager.yml by a test. The recorder's group holds every severity; only the alerts the
# pager's route matchers admit were paged, so those matchers filter the rows.


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        # Alertmanager: a missing label matches as the empty string; regexes are anchored.
        have = labels.get(self.name, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(have) is not None
        return found if self.op == "=~" else not found


_QUOTED = r'"(?:[^"\\]|\\.)*"'
_MATCHER = re.compile(rf"\s*({_QUOTED}|[A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*({_QUOTED})\s*")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_HEX_ESCAPE = {"x": 2, "u": 4, "U": 8}


def _go_unquote(quoted: str) -> str | None:
    """A Go %q string's value (Alertmanager quotes matcher values so); None if unreadable."""
    body, out, i = quoted[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            return None
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "\\\"'":
            out.append(e)
            i += 2
        elif e in _HEX_ESCAPE:
            digits = body[i + 2 : i + 2 + _HEX_ESCAPE[e]]
            try:
                out.append(chr(int(digits, 16)))
            except ValueError:
                return None
            i += 2 + _HEX_ESCAPE[e]
        else:
            return None
    return "".join(out)


def route_matchers(route_key: str) -> list[Matcher] | None:
    """Every matcher on the path of a route key (`{}/{severity="critical"}`), or None when the
    key cannot be read (its group then counts whole)."""
    out: list[Matcher] = []
    pos = 0
    while pos < len(route_key):
        if route_key[pos] != "{":
            return None
        pos += 1
        while not route_key.startswith("}", pos):
            m = _MATCHER.match(route_key, pos)
            if m is None:
                return None
            name, op, raw = m.groups()
            if name.startswith('"'):
                name = _go_unquote(name)
            value = _go_unquote(raw)
            if name is None or value is None:
                return None
            pattern = None
            if op in ("=~", "!~"):
                try:
                    pattern = re.compile(value)
                except re.error:
                    return None
            out.append(Matcher(name, op, value, pattern))
            pos = m.end()
            if route_key.startswith(",", pos):
                pos += 1
            elif not route_key.startswith("}", pos):
                return None
        pos += 1
        if pos < len(route_key):
            if route_key[pos] != "/" or pos + 1 == len(route_key):
                return None
            pos += 1
    return out


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def label_parts(group_key: str) -> list[str]:
    """Every way to read a group key as "<route key>:<group labels>": the labels start after a
    "}:{" (the route key ends with its matchers' "}", the labels begin with "{"). One reading
    in practice; a label value holding "}:{" adds others, which can match only through a
    sha256 collision."""
    out = []
    i = group_key.find("}:{")
    while i != -1:
        out.append(group_key[i + 2 :])
        i = group_key.find("}:{", i + 1)
    return out


Accept = Callable[[Mapping[str, str]], bool]


def _everything(_: Mapping[str, str]) -> bool:
    return True


def paged_by(group_key: str, incident_key: str, route_keys: tuple[str, ...]) -> Accept | None:
    """Which alerts of the recorder's group `group_key` were paged with `incident_key` as their
    dedup key (a filter on their labels), or None when the group was not."""
    if _sha256(group_key) == incident_key:
        # The recorder's route pages too (the same notification went to both): all of it.
        return _everything
    for labels in label_parts(group_key):
        for route in route_keys:
            if _sha256(f"{route}:{labels}") == incident_key:
                matchers = route_matchers(route)
                if matchers is None:
                    log.warning("pagerduty route key unreadable; its whole group matches")
                    return _everything
                return lambda alert: all(m.matches(alert) for m in matchers)
    return None


def incident_rows(
    groups: list[tuple[UUID, str, dict[str, Any]]],
    incident_key: str,
    route_keys: tuple[str, ...],
) -> list[UUID]:
    """The active alert rows (from writes.active_alert_groups) an incident was paged for."""
    key = incident_key.strip().lower()
    decided: dict[str, Accept | None] = {}
    rows = set()
    for row_id, group_key, labels in groups:
        if group_key not in decided:
            decided[group_key] = paged_by(group_key, key, route_keys)
        accept = decided[group_key]
        strings = {k: v for k, v in labels.items() if isinstance(v, str)}
        if accept is not None and accept(strings):
            rows.add(row_id)
    return sorted(rows)


# --- the handler -----------------------------------------------------------------------------


def _outcome(exc: ApiError) -> str:
    if exc.status in (401, 404):
        return "unauthorized"
    if exc.status == 403 or exc.status >= 500:
        return "failed"
    return "invalid"


async def webhook(request: web.Request) -> web.Response:
    counter = request.app[SERVICES].metrics.pagerduty_webhooks
    try:
        outcome, body = await _receive(request)
    except ApiError as exc:
        counter.labels(_outcome(exc)).inc()
        raise
    except Exception:
        counter.labels("failed").inc()
        raise
    counter.labels(outcome).inc()
    return web.json_response(body, status=202)


async def _read(request: web.Request) -> bytes:
    too_large = ApiError("too_large", f"body over {MAX_BODY_BYTES} bytes (PagerDuty's own limit)")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)


async def _receive(request: web.Request) -> tuple[str, dict[str, Any]]:
    services = request.app[SERVICES]
    pd = services.pagerduty
    if pd is None:
        raise ApiError(
            "not_found", "PagerDuty webhooks are not configured here (pagerduty: in the config)"
        )
    header = header_bytes(request, SIGNATURE_HEADER)
    if not header.strip():
        raise ApiError("missing_signature", f"no {SIGNATURE_HEADER} header")
    body = await _read(request)
    if not verified(pd.secret, body, signatures(header)):
        raise ApiError(
            "invalid_signature",
            f"no v1 signature in {SIGNATURE_HEADER} is the body's HMAC-SHA256 with the "
            "subscription's secret",
        )
    # From here on the body is PagerDuty's own.
    try:
        require_content_type(request, "application/json")
        doc = strict_json(body)
    except BadRequest as exc:
        raise ApiError(exc.reason, exc.detail) from None
    if may_hold_bad_strings(body):
        # NUL or lone surrogates cannot be stored; PagerDuty's text is kept with U+FFFD instead.
        doc = scrub(doc)
    event = parse_event(doc)
    answer: dict[str, Any] = {"event_id": event.event_id, "event_type": event.event_type}
    if isinstance(event, Ignored):
        log.debug("pagerduty event ignored", extra={"event_type": event.event_type[:100]})
        return "ignored", {**answer, "outcome": "ignored", "matched": 0}
    outcome, matched = await _apply(request, services, pd, event)
    log.info(
        "pagerduty event",
        extra={"event_type": event.event_type, "outcome": outcome, "matched": matched},
    )
    return outcome, {**answer, "outcome": outcome, "matched": matched}


async def _apply(
    request: web.Request, services: Services, pd: PagerDutySettings, event: IncidentEvent
) -> tuple[str, int]:
    if not services.machines_provisioned:
        raise ApiError(
            "machine_user_unprovisioned", "the PagerDuty machine user is not yet set up; retry"
        )
    who = services.auth.acting_as(pd.machine)
    undos: list[Undo] = []
    try:
        async with services.db.as_caller(who) as conn:
            fresh = await writes.claim_pagerduty_event(
                conn,
                event_id=event.event_id,
                event_type=event.event_type,
                incident_id=event.incident_id,
                incident_key=event.incident_key,
                occurred_at=event.occurred_at,
            )
            if not fresh:
                return "duplicate", 0
            rows: list[UUID] = []
            if event.incident_key is not None:
                groups = await writes.active_alert_groups(conn)
                rows = incident_rows(groups, event.incident_key, pd.route_keys)
            done = 0
            acked: list[dict[str, Any]] = []
            if rows:
                done = await _write(request, services, pd, who, conn, event, rows, undos, acked)
            await writes.finish_pagerduty_event(conn, event.event_id, done)
    except BaseException:
        for undo in undos:
            await take_back(services, "end manual incident", undo)
        raise
    if acked:
        # Committed: the ops channel is told who took it, once per incident (notices.py).
        notice = acknowledgement_notice(acked[0], _agent_name(event.agent), None, "PagerDuty")
        if len(acked) > 1:
            notice["annotations"]["description"] += (
                f"\n…and {len(acked) - 1} more alert(s) of PagerDuty incident "
                f"#{event.number or event.incident_id}"
            )
        await tell_ops(services, notice)
    return ("applied" if done else "unmatched"), done


async def _write(
    request: web.Request,
    services: Services,
    pd: PagerDutySettings,
    who: Identity,
    conn: psycopg.AsyncConnection[Any],
    event: IncidentEvent,
    rows: list[UUID],
    undos: list[Undo],
    acked: list[dict[str, Any]],
) -> int:
    """Apply the event to each row and audit it; how many were written. The rows acknowledged
    (as they were before) are added to `acked`."""
    responder, email = await _responder(conn, pd, event.agent)
    info = _pagerduty_json(request, event, responder, email)
    done = 0
    for row_id, before in await writes.lock_alerts(conn, rows):
        if before.get("resolved_at") is not None:
            continue  # resolved since it was matched
        after: dict[str, Any] | None
        if event.event_type == "incident.acknowledged":
            after = await writes.acknowledge_alert(conn, row_id, by=responder)
            if after is not None:
                acked.append(before)
        elif event.event_type == "incident.resolved":
            prior = before.get("resolution_notes")
            note = _resolution_note(event, email if responder else None)
            notes = f"{prior}\n{note}" if isinstance(prior, str) and prior else note
            resolution = await resolve_locked(services, conn, row_id, before, notes, by=responder)
            after = None
            if resolution is not None:
                after, _, undo = resolution
                if undo is not None:
                    undos.append(undo)
        else:  # incident.reassigned: only the audit log records it (no column for it).
            after = dict(before)
        if after is None:
            continue
        await writes.append_audit(
            conn,
            who.audit(
                _ACTIONS[event.event_type],
                TABLE,
                str(row_id),
                before,
                {**after, "pagerduty": info},
                request[REQUEST_ID],
            ),
        )
        done += 1
    return done


async def _responder(
    conn: psycopg.AsyncConnection[Any], pd: PagerDutySettings, agent: Reference | None
) -> tuple[UUID | None, str | None]:
    """(user id, email) of the account here of the PagerDuty user who acted: their email from
    pagerduty.responders, their account by that email. (None, email-or-None) when either is
    missing: the write is then the machine user's."""
    if agent is None or agent.type != "user_reference" or agent.id is None:
        return None, None
    email = pd.responders.get(agent.id)
    if email is None:
        return None, None
    return await writes.user_id_by_email(conn, email), email


def _agent_name(agent: Reference | None) -> str:
    if agent is None:
        return "PagerDuty"
    name = agent.summary or "someone"
    kind = "user" if agent.type == "user_reference" else (agent.type or "agent")
    return f"{name} (PagerDuty {kind} {agent.id})" if agent.id else name


def _resolution_note(event: IncidentEvent, email: str | None) -> str:
    who = email or _agent_name(event.agent)
    where = f" (incident #{event.number})" if event.number is not None else ""
    return f"resolved in PagerDuty by {who}{where}"


def _pagerduty_json(
    request: web.Request, event: IncidentEvent, responder: UUID | None, email: str | None
) -> dict[str, Any]:
    """What the audit row keeps of the event: who acted in PagerDuty and who that is here."""
    info: dict[str, Any] = {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "occurred_at": None if event.occurred_at is None else event.occurred_at.isoformat(),
        "webhook_id": _text(request.headers.get("X-Webhook-Id"), MAX_ID),
        "incident": {
            "id": event.incident_id,
            "number": event.number,
            "title": event.title,
            "html_url": event.html_url,
            "incident_key": event.incident_key,
        },
        "agent": None if event.agent is None else event.agent.as_json(),
        # The account the action is recorded under: the responder's (by email), or None when
        # it is the machine user's.
        "responder": {"email": email, "user_id": None if responder is None else str(responder)},
    }
    if event.event_type == "incident.reassigned":
        info["assignees"] = [a.as_json() for a in event.assignees]
    return info
