"""Billing APIs, strict, per ../shared/apis.md §1.4 and §5.1, and the FOCUS data they serve.

- Vercel `GET /v1/billing/charges?from&to[&teamId|slug]`: Bearer token (403 `forbidden`), only
  documented parameters (400 `bad_request`), `from`/`to` required ISO 8601 UTC with to > from and
  at most a year apart, FOCUS 1.3 JSONL with PascalCase keys, gzip when `Accept-Encoding: gzip`.
  No pagination.
- OpenAI `GET /v1/organization/costs`: Bearer admin key (401 `invalid_api_key`), `start_time`
  required (Unix seconds), `bucket_width` only `1d`, `group_by` ∈ {project_id, line_item},
  `limit` 1-180 (default 7), `page` = the previous `next_page`; 429 with Retry-After. Amounts
  are numbers, or numeric strings when `amounts_as_strings` is set (seen in the wild).

`python -m fakes.billing_api` serves both (two ports) with DEMO data: several months of
a growing platform's Vercel and OpenAI charges; `write_supabase_invoices` writes Supabase
invoices as FOCUS CSV files for the folder source.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

VERCEL_PARAMS = frozenset({"from", "to", "teamId", "slug"})
OPENAI_PARAMS = frozenset(
    {
        "start_time",
        "end_time",
        "bucket_width",
        "project_ids",
        "api_key_ids",
        "group_by",
        "limit",
        "page",
    }
)
FAULTS = ("500", "503", "429", "truncated", "malformed", "timeout")
TWO = Decimal("0.01")


def _vercel_err(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _openai_err(status: int, message: str, type_: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse_iso(value: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    if t.tzinfo is None:
        return None  # the docs ask for UTC with its Z
    return t.astimezone(UTC)


# -- the data -------------------------------------------------------------------------------


# Vercel services of a Pro team (names as observed, see apis.md): (name, category, unit,
# daily quantity at the start, price per unit in USD).
VERCEL_SERVICES = (
    ("Function Invocations", "Compute", "Invocations", 400_000, Decimal("0.0000006")),
    ("Fluid Active CPU", "Compute", "CPU-Hours", 18, Decimal("0.128")),
    ("Fast Origin Transfer", "Networking", "GB", 27, Decimal("0.06")),
    ("Edge Requests", "Networking", "Requests", 1_100_000, Decimal("0.000002")),
    ("Build Minutes", "Developer Tools", "Minutes", 140, Decimal("0.014")),
)
OPENAI_ITEMS = (
    ("gpt-4o-mini, input", "tokens", 4_500_000, Decimal("0.00000015")),
    ("gpt-4o-mini, output", "tokens", 750_000, Decimal("0.0000006")),
    ("text-embedding-3-small", "tokens", 10_000_000, Decimal("0.00000002")),
)


@dataclass
class BillingData:
    """Daily charges for a platform growing `growth` a month from `start`, deterministic per day.

    Tests replace or add a day's rows (`vercel_override`, `openai_override`) to play
    restatements, corrections and outages.
    """

    start: date = date(2026, 8, 1)
    growth: float = 0.12
    preview_share: float = 0.15
    seed: int = 7
    vercel_override: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    openai_override: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    # Days (UTC) after which no data exists yet (the provider's reporting lag).
    last_day: Callable[[], date] | None = None

    def _scale(self, d: date) -> float:
        months = (d - self.start).days / 30.0
        rnd = random.Random(f"{self.seed}-{d.isoformat()}")
        return float((1 + self.growth) ** months * rnd.uniform(0.9, 1.1))

    def available(self, d: date) -> bool:
        if d < self.start:
            return False
        return self.last_day is None or d <= self.last_day()

    def vercel_day(self, d: date) -> list[dict[str, Any]]:
        if d in self.vercel_override:
            return self.vercel_override[d]
        if not self.available(d):
            return []
        s = self._scale(d)
        start = datetime(d.year, d.month, d.day, tzinfo=UTC)
        period = {
            "ChargePeriodStart": _iso(start),
            "ChargePeriodEnd": _iso(start + timedelta(days=1)),
        }
        rows = []
        for name, cat, unit, qty, price in VERCEL_SERVICES:
            total = int(qty * s)
            for env, share in (
                ("production", 1 - self.preview_share),
                ("preview", self.preview_share),
            ):
                q = int(total * share)
                cost = (price * q).quantize(TWO)
                rows.append(
                    {
                        "BilledCost": cost,
                        "BillingCurrency": "USD",
                        "ChargeCategory": "Usage",
                        **period,
                        "ConsumedQuantity": q,
                        "ConsumedUnit": unit,
                        "EffectiveCost": cost,
                        "PricingCategory": "Standard",
                        "PricingCurrency": "USD",
                        "PricingQuantity": q,
                        "PricingUnit": unit,
                        "RegionId": "iad1",
                        "RegionName": "Washington, D.C., USA",
                        "ServiceCategory": cat,
                        "ServiceName": name,
                        "ServiceProviderName": "Vercel",
                        "Tags": {
                            "ProjectId": "prj_demo0000000000000000000000",
                            "ProjectName": "web",
                            "Environment": env,
                        },
                    }
                )
        if d.day == 1:  # the Pro plan's seats, bought monthly
            rows.append(
                {
                    "BilledCost": Decimal(60),
                    "BillingCurrency": "USD",
                    "ChargeCategory": "Purchase",
                    **period,
                    "ConsumedQuantity": None,
                    "ConsumedUnit": None,
                    "EffectiveCost": Decimal(60),
                    "PricingCategory": "Standard",
                    "PricingCurrency": "USD",
                    "PricingQuantity": 3,
                    "PricingUnit": "Seat",
                    "ServiceName": "Pro",
                    "ServiceProviderName": "Vercel",
                    "Tags": {},
                }
            )
        return rows

    def openai_day(self, d: date) -> list[dict[str, Any]]:
        if d in self.openai_override:
            return self.openai_override[d]
        if not self.available(d):
            return []
        s = self._scale(d)
        out = []
        for item, unit, qty, price in OPENAI_ITEMS:
            q = int(qty * s)
            out.append(
                {
                    "object": "organization.costs.result",
                    "amount": {
                        "value": (price * q).quantize(Decimal("0.000001")),
                        "currency": "usd",
                    },
                    "line_item": item,
                    "project_id": None,
                    "api_key_id": None,
                    "quantity": q,
                    "quantity_unit": unit,
                }
            )
        return out


def _dumps(obj: Any, as_strings: bool = False) -> str:
    """JSON with Decimals written as their exact digits (or as strings, like OpenAI sometimes)."""
    if isinstance(obj, dict):
        return (
            "{" + ",".join(f"{json.dumps(k)}:{_dumps(v, as_strings)}" for k, v in obj.items()) + "}"
        )
    if isinstance(obj, list):
        return "[" + ",".join(_dumps(v, as_strings) for v in obj) + "]"
    if isinstance(obj, Decimal):
        return json.dumps(str(obj)) if as_strings else str(obj)
    return json.dumps(obj)


# -- the servers ----------------------------------------------------------------------------


@dataclass
class BillingApiState:
    data: BillingData
    vercel_token: str
    openai_key: str
    team_id: str | None = None
    team_slug: str | None = None
    amounts_as_strings: bool = False
    # Fault injection: the next requests fail this way, in order ("500", "429", "truncated", …).
    faults: list[str] = field(default_factory=list)
    retry_after: int = 2
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


STATE = web.AppKey("billing_state", BillingApiState)


def make_vercel_app(state: BillingApiState, *, health: bool = False) -> web.Application:
    app = web.Application()
    app[STATE] = state

    async def charges(request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        state.requests.append((request.path, q))
        if request.headers.get("Authorization") != f"Bearer {state.vercel_token}":
            return _vercel_err(403, "forbidden", "Not authorized")
        fault = state.faults.pop(0) if state.faults else None
        if fault in ("500", "503"):
            return _vercel_err(
                int(fault), "internal_server_error", "An unexpected internal error occurred"
            )
        if fault == "429":
            resp = _vercel_err(429, "rate_limited", "Rate limit exceeded")
            reset = int(datetime.now(UTC).timestamp()) + state.retry_after
            resp.headers.update({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})
            return resp
        if fault == "timeout":
            await asyncio.sleep(3600)
        unknown = sorted(set(q) - VERCEL_PARAMS)
        if unknown:
            return _vercel_err(
                400,
                "bad_request",
                f"Invalid request: should NOT have additional property `{unknown[0]}`.",
            )
        if state.team_id is not None:
            if q.get("teamId") != state.team_id and (
                state.team_slug is None or q.get("slug") != state.team_slug
            ):
                return _vercel_err(403, "forbidden", "Not authorized")
        elif "teamId" in q or "slug" in q:
            return _vercel_err(403, "forbidden", "Not authorized")
        for name in ("from", "to"):
            if name not in q:
                return _vercel_err(
                    400, "bad_request", f"Invalid request: missing required property `{name}`."
                )
        start, end = _parse_iso(q["from"]), _parse_iso(q["to"])
        if start is None or end is None:
            return _vercel_err(
                400,
                "bad_request",
                "Invalid request: `from` and `to` must be ISO 8601 UTC date-times.",
            )
        if end <= start or end - start > timedelta(days=366):
            return _vercel_err(
                400,
                "bad_request",
                "Invalid request: the date range must be positive and at most 1 year.",
            )
        lines = []
        d = start.date()
        while datetime(d.year, d.month, d.day, tzinfo=UTC) < end:
            for row in state.data.vercel_day(d):
                if start <= _parse_iso(row["ChargePeriodStart"]) < end:  # type: ignore[operator]
                    lines.append(_dumps(row))
            d += timedelta(days=1)
        body = ("\n".join(lines) + "\n" if lines else "").encode()
        if fault == "truncated":
            body = body[: len(body) // 2]
        if fault == "malformed":
            body = b'{"BilledCost": 1.5, "BillingCurrency": "USD", "Charge\n' + body
        headers = {"Content-Type": "application/jsonl"}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        stream = web.StreamResponse(headers=headers)
        if fault == "truncated":
            # Promise more than is sent, then close: the client sees the stream cut.
            stream.content_length = len(body) * 2
        await stream.prepare(request)
        await stream.write(body)
        if fault == "truncated":
            request.transport.close()  # type: ignore[union-attr]
            return stream
        await stream.write_eof()
        return stream

    app.router.add_get("/v1/billing/charges", charges)
    _common(app, health)
    return app


def make_openai_app(state: BillingApiState, *, health: bool = False) -> web.Application:
    app = web.Application()
    app[STATE] = state

    async def costs(request: web.Request) -> web.Response:
        q = request.query
        state.requests.append((request.path, dict(q)))
        if request.headers.get("Authorization") != f"Bearer {state.openai_key}":
            return _openai_err(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        fault = state.faults.pop(0) if state.faults else None
        if fault in ("500", "503"):
            return _openai_err(
                int(fault), "The server had an error while processing your request.", "server_error"
            )
        if fault == "429":
            resp = _openai_err(
                429, "Rate limit reached for requests", "requests", "rate_limit_exceeded"
            )
            resp.headers["Retry-After"] = str(state.retry_after)
            return resp
        if fault == "timeout":
            await asyncio.sleep(3600)
        keys = {k.removesuffix("[]") for k in q}
        unknown = sorted(keys - OPENAI_PARAMS)
        if unknown:
            return _openai_err(
                400,
                f"Unrecognized request argument supplied: {unknown[0]}",
                "invalid_request_error",
            )
        try:
            start = int(q["start_time"])
            end = int(q["end_time"]) if "end_time" in q else None
            limit = int(q.get("limit", "7"))
        except KeyError:
            return _openai_err(
                400, "Missing required parameter: 'start_time'.", "invalid_request_error"
            )
        except ValueError:
            return _openai_err(400, "Invalid integer parameter.", "invalid_request_error")
        if q.get("bucket_width", "1d") != "1d":
            return _openai_err(
                400,
                "Invalid value for 'bucket_width': only '1d' is supported.",
                "invalid_request_error",
            )
        group = q.getall("group_by", []) + q.getall("group_by[]", [])
        if any(g not in ("project_id", "line_item") for g in group):
            return _openai_err(400, "Invalid value for 'group_by'.", "invalid_request_error")
        if not 1 <= limit <= 180:
            return _openai_err(
                400,
                "Invalid value for 'limit': must be between 1 and 180.",
                "invalid_request_error",
            )
        first = datetime.fromtimestamp(start, UTC).date()
        if datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp() != start:
            first += timedelta(days=1)  # buckets are whole UTC days starting at or after start
        stop = (
            datetime.fromtimestamp(end, UTC).date()
            if end
            else datetime.now(UTC).date() + timedelta(days=1)
        )
        if "page" in q:
            try:
                first = date.fromisoformat(q["page"].removeprefix("page_"))
            except ValueError:
                return _openai_err(400, "Invalid page cursor.", "invalid_request_error")
        buckets: list[dict[str, Any]] = []
        d = first
        while d < stop and len(buckets) < limit:
            t0 = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
            results = state.data.openai_day(d)
            if "line_item" not in group:  # one total per bucket, as the API sums ungrouped
                total = sum((Decimal(str(r["amount"]["value"])) for r in results), Decimal(0))
                results = (
                    [
                        {
                            "object": "organization.costs.result",
                            "amount": {"value": total, "currency": "usd"},
                            "line_item": None,
                            "project_id": None,
                        }
                    ]
                    if results
                    else []
                )
            buckets.append(
                {"object": "bucket", "start_time": t0, "end_time": t0 + 86400, "results": results}
            )
            d += timedelta(days=1)
        more = d < stop
        doc = {
            "object": "page",
            "data": buckets,
            "has_more": more,
            "next_page": f"page_{d.isoformat()}" if more else None,
        }
        text = _dumps(doc, as_strings=state.amounts_as_strings)
        if fault == "malformed":
            text = text[: len(text) // 2]
        return web.Response(text=text, content_type="application/json")

    app.router.add_get("/v1/organization/costs", costs)
    _common(app, health)
    return app


def _common(app: web.Application, health: bool) -> None:
    if health:

        async def healthy(_: web.Request) -> web.Response:
            return web.Response(text="OK\n")

        app.router.add_get("/-/healthy", healthy)


# -- Supabase invoices as FOCUS files -------------------------------------------------------

FOCUS_CSV_COLUMNS = (
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ServiceName",
    "ServiceCategory",
    "ServiceProviderName",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingQuantity",
    "PricingUnit",
    "Tags",
)


def supabase_invoice(month: date, growth_months: int) -> list[dict[str, str]]:
    """A Supabase Pro organisation's monthly invoice as FOCUS rows (Supabase has no cost API)."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    disk = 40 + 8 * growth_months
    egress = 180 + 40 * growth_months
    lines = [
        ("Pro Plan", "Databases", "Purchase", Decimal(25), "1", "Organization"),
        ("Compute Small", "Compute", "Usage", Decimal("15.00"), "744", "Hours"),
        (
            "Disk Size",
            "Storage",
            "Usage",
            (Decimal(disk - 8) * Decimal("0.125")).quantize(TWO),
            str(disk),
            "GB",
        ),
        (
            "Egress",
            "Networking",
            "Usage",
            (Decimal(max(egress - 250, 0)) * Decimal("0.09")).quantize(TWO),
            str(egress),
            "GB",
        ),
        ("IPv4 Address", "Networking", "Purchase", Decimal(4), "0", "Addresses"),
        ("Compute Credits", "Compute", "Credit", Decimal(-10), "", ""),
    ]
    rows = []
    for name, cat, charge, cost, qty, unit in lines:
        rows.append(
            {
                "BilledCost": str(cost),
                "EffectiveCost": str(cost),
                "ListCost": str(cost),
                "ContractedCost": str(cost),
                "BillingCurrency": "USD",
                "BillingPeriodStart": _iso(start),
                "BillingPeriodEnd": _iso(end),
                "ChargePeriodStart": _iso(start),
                "ChargePeriodEnd": _iso(end),
                "ChargeCategory": charge,
                "ChargeClass": "",
                "ServiceName": name,
                "ServiceCategory": cat,
                "ServiceProviderName": "Supabase",
                "ConsumedQuantity": qty,
                "ConsumedUnit": unit if qty != "" else "",
                "PricingQuantity": qty or "1",
                "PricingUnit": unit or "Credit",
                "Tags": json.dumps({"project": "demo"}),
            }
        )
    return rows


def write_focus_csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FOCUS_CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)  # a reader never sees half a file


def write_supabase_invoices(folder: Path, first: date, today: date) -> list[Path]:
    """One FOCUS CSV per month from `first` through today's month."""
    out = []
    m, i = first.replace(day=1), 0
    while m <= today:
        p = folder / f"supabase-{m:%Y-%m}.csv"
        write_focus_csv(p, supabase_invoice(m, i))
        out.append(p)
        m, i = (m + timedelta(days=32)).replace(day=1), i + 1
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="DEMO billing APIs (Vercel charges, OpenAI costs)")
    parser.add_argument("--vercel-listen", required=True)
    parser.add_argument("--openai-listen", required=True)
    parser.add_argument("--secrets-dir", type=Path, required=True)
    parser.add_argument("--team-id")
    parser.add_argument("--invoices-dir", type=Path, help="write Supabase FOCUS invoices here")
    args = parser.parse_args(argv)
    today = datetime.now(UTC).date()
    # Three months back and a lag of a day, as the vendors report.
    data = BillingData(
        start=(today.replace(day=1) - timedelta(days=70)).replace(day=1),
        last_day=lambda: datetime.now(UTC).date(),
    )
    state = BillingApiState(
        data,
        vercel_token=(args.secrets_dir / "vercel_billing_token").read_text().strip(),
        openai_key=(args.secrets_dir / "openai_admin_key").read_text().strip(),
        team_id=args.team_id,
        amounts_as_strings=True,
    )
    if args.invoices_dir:
        write_supabase_invoices(args.invoices_dir, data.start, today)

    async def serve() -> None:
        runners = []
        for listen, app in (
            (args.vercel_listen, make_vercel_app(state, health=True)),
            (args.openai_listen, make_openai_app(state, health=True)),
        ):
            host, _, port = listen.rpartition(":")
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host or "127.0.0.1", int(port)).start()
            runners.append(runner)
        print(
            f"DEMO Vercel billing API on http://{args.vercel_listen}/v1/billing/charges, "
            f"OpenAI costs API on http://{args.openai_listen}/v1/organization/costs",
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            for r in runners:
                await r.cleanup()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
