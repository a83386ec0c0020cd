"""What the API accepts: JSON bodies (common.ingress's strict JSON into strict models) and query
strings. Each problem is an ApiError with a 4xx and a reason; nothing here touches a database.

Status per kind of problem, the same for every endpoint:
  400 invalid_json            not JSON (syntax, NaN, nesting beyond 32 levels)
  413 too_large               over max_body_bytes
  415 unsupported_media_type  not application/json
  422 invalid_request         JSON, but the wrong shape: unknown field, wrong type, value out of
                              its enum or length, an unstorable string, an unknown or repeated
                              query parameter
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from multidict import MultiMapping
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from api.alertmanager import rfc3339
from api.errors import ApiError
from common.ingress import (
    BadRequest,
    find_bad_string,
    may_hold_bad_strings,
    require_content_type,
    strict_json,
)
from schema.rows import ENVIRONMENTS

B = TypeVar("B", bound="Body")

# At least one character that is not white space: a title of spaces says nothing on a page.
_TEXT = r"\S"
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# A description or note is prose, not a document: long enough for a paragraph of findings.
MAX_TEXT = 10_000


Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_TEXT)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=_TEXT)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=_TEXT)]


class Body(BaseModel):
    """A request body: unknown fields refused, no type coercion (a "3" is not a 3)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class CreateAlertRequest(Body):
    """The spec's CreateAlertRequest. Lengths are infrastructure_alerts' column widths."""

    alert_type: Name
    # SEVERITIES (schema.rows), the column's CHECK.
    severity: Literal["info", "warning", "error", "critical"]
    service_name: Name
    alert_title: Title
    alert_description: Text
    metric_threshold: Annotated[float, Field(allow_inf_nan=False)] | None = None
    alert_rule: dict[str, Any] | None = None


class AlertActionRequest(Body):
    """PUT /alerts: acknowledge or resolve one alert (infrastructure_alerts.id)."""

    id: Annotated[str, StringConstraints(pattern=_UUID)]
    action: Literal["acknowledge", "resolve"]
    notes: Annotated[str, StringConstraints(max_length=MAX_TEXT)] | None = None

    @property
    def alert_id(self) -> UUID:
        return UUID(self.id)


class DeploymentConfig(Body):
    """deployment_config of POST /deployments: the keys a deploy hook can act on (docs/
    operator-api.md, "Starting a deployment"); any other key is refused, not ignored."""

    # Which configured project (deploy_hooks.hooks[].project); needed when several are.
    project: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")] | None = None
    # False: build without Vercel's build cache (the hook's ?buildCache=false).
    build_cache: bool = True


class DeploymentRequest(Body):
    """The spec's DeploymentRequest. Lengths are deployment_history's column widths."""

    environment: Literal["production", "staging", "preview"]
    # A branch name as Git allows it: no white space or control characters.
    git_branch: Annotated[str, StringConstraints(pattern=r"^[^\s\x00-\x1f\x7f]{1,200}$")]
    git_commit_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{7,40}$")] | None = None
    deployment_config: DeploymentConfig | None = None


def _invalid(reason: str) -> ApiError:
    return ApiError("invalid_request", reason)


async def read_body(request: web.Request, model: type[B], max_bytes: int) -> B:
    try:
        require_content_type(request, "application/json")
        if request.content_length is not None and request.content_length > max_bytes:
            raise BadRequest("too_large", f"body over {max_bytes} bytes", 413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BadRequest("too_large", f"body over {max_bytes} bytes", 413) from None
        except RequestPayloadError:
            # A Content-Encoding (gzip, deflate) whose body does not decode as it says.
            raise BadRequest(
                "invalid_json", "the body does not decode as its Content-Encoding says", 400
            ) from None
        doc = strict_json(body, unique_keys=True)
    except BadRequest as exc:
        raise ApiError(exc.reason, exc.detail) from None
    if not isinstance(doc, dict):
        raise _invalid("the body must be a JSON object")
    why = may_hold_bad_strings(body) and find_bad_string(doc)
    if why:
        raise _invalid(why)
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise _invalid(describe(exc)) from None


def describe(exc: ValidationError, limit: int = 5) -> str:
    """`field: problem; …` for the first few errors, never echoing the input."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(body)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{where}: {msg}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _query(query: MultiMapping[str], allowed: tuple[str, ...]) -> dict[str, str]:
    """The query as {name: value}; an unknown or repeated parameter is a 422."""
    unknown = sorted({k for k in query if k not in allowed})
    if unknown:
        names = ", ".join(repr(k[:40]) for k in unknown[:5])
        accepted = ", ".join(allowed) or "none"
        raise _invalid(f"unknown query parameter {names} (accepted: {accepted})")
    out = {}
    for key in allowed:
        values = query.getall(key, [])
        if len(values) > 1:
            raise _invalid(f"query parameter {key} given more than once")
        if values:
            out[key] = values[0]
    return out


def no_query(request: web.Request) -> None:
    _query(request.query, ())


def query_params(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query as {name: value} for a handler that checks the values itself; an unknown or
    repeated parameter is a 422 (api/infra_metrics.py)."""
    return _query(request.query, allowed)


DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def deployments_query(request: web.Request) -> tuple[str | None, int]:
    """(environment or None, limit) of GET /deployments."""
    q = _query(request.query, ("environment", "limit"))
    environment = q.get("environment")
    if environment is not None and environment not in ENVIRONMENTS:
        raise _invalid(f"environment must be one of {', '.join(ENVIRONMENTS)}")
    return environment, parse_limit(q.get("limit"), DEFAULT_LIMIT)


def parse_limit(text: str | None, default: int) -> int:
    """A list's `limit` query parameter: 1..MAX_LIMIT, `default` when absent."""
    if text is None:
        return default
    # The length first: int() of a 5,000-digit string raises (and costs) before any compare.
    if not (len(text) <= 3 and text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
        raise _invalid(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A database row for JSON (an audit row's before/after, an answer): times RFC 3339, ids as
    text, decimals as numbers."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            out[key] = rfc3339(value)
        elif isinstance(value, UUID):
            out[key] = str(value)
        elif isinstance(value, Decimal):
            out[key] = float(value)
        else:
            out[key] = value
    return out


_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)
_NO_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$", re.ASCII)


def parse_time(name: str, text: str) -> datetime:
    """An RFC 3339 time with an offset (Z or ±hh:mm), in UTC; anything else is a 422 naming
    `name`. The pattern first: fromisoformat alone takes ISO 8601 forms RFC 3339 does not
    (20261130T1200Z), and a time without an offset would silently be the server's."""
    if not _RFC3339.fullmatch(text):
        if _NO_OFFSET.fullmatch(text):
            raise ApiError(
                "invalid_request",
                f"{name} must be an RFC 3339 time with a time zone offset (Z or +hh:mm)",
            )
        raise ApiError(
            "invalid_request", f"{name} must be an RFC 3339 time such as 2026-11-30T12:00:00Z"
        )
    # Python 3.11's fromisoformat takes up to microseconds: nanoseconds are cut.
    cut = re.sub(r"(\.\d{6})\d+", r"\1", text.upper().replace(" ", "T"))
    try:
        return datetime.fromisoformat(cut).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset past year 1 or 9999
        raise ApiError(
            "invalid_request",
            f"{name} is not a valid date and time (RFC 3339, such as 2026-11-30T12:00:00Z)",
        ) from None
