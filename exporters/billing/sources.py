"""Where charges come from: Vercel's FOCUS charges, OpenAI's organization costs, FOCUS files.

A fetch either returns the whole delivery or raises: a stream cut mid-way, a page that fails,
a 429 — the ledger keeps its previous copy of those days and nothing half-read is used.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from exporters.billing.config import FocusFolder, OpenAICosts, VercelCharges
from exporters.billing.focus import Batch, DayBook, Normalizer, RowError, read_csv, read_jsonl

log = logging.getLogger("exporters.billing.sources")

ERROR_REASONS = (
    "auth",
    "rate_limited",
    "server",
    "timeout",
    "connect",
    "malformed",
    "client",
    "io",
)
# Rows processed between yields to the event loop, so /metrics answers during a big fetch.
CHUNK = 5000


class SourceError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Delivery:
    """A fetch's result. `covered` are the days it speaks for (replaced in the ledger, empty
    ones included); None means it is the source's whole data (a folder rescan)."""

    batch: Batch
    covered: list[date] | None
    requests: int = 0


def utc_day(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


class _Http:
    """Shared HTTP behaviour: bearer auth, error reasons, and backing off after a 429."""

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float,
        *,
        transport: httpx.AsyncBaseTransport | None,
        clock: Callable[[], float],
    ) -> None:
        self.clock = clock
        self.blocked_until = 0.0
        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "wsinfra-billing-exporter"},
            timeout=timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def check_blocked(self) -> None:
        if self.blocked_until > self.clock():
            raise SourceError("rate_limited", "waiting for the rate-limit window")

    def fail(self, resp: httpx.Response) -> SourceError:
        code = resp.status_code
        if code == 429:
            self.blocked_until = self.clock() + _retry_after(resp, self.clock())
            return SourceError(
                "rate_limited", f"HTTP 429, retrying in {self.blocked_until - self.clock():.0f}s"
            )
        reason = "auth" if code in (401, 403) else "server" if code >= 500 else "client"
        return SourceError(reason, f"HTTP {code}{_error_code(resp)}")


def _error_code(resp: httpx.Response) -> str:
    """The vendor's error code (never its message, which may echo request details)."""
    try:
        doc = resp.json()
    except ValueError:
        return ""
    err = doc.get("error") if isinstance(doc, dict) else None
    code = err.get("code") or err.get("type") if isinstance(err, dict) else None
    return f" ({str(code)[:40]})" if code else ""


def _retry_after(resp: httpx.Response, now: float) -> float:
    """Seconds to wait: Retry-After (seconds or a date), else Vercel's X-RateLimit-Reset (epoch
    seconds), else a minute; never more than an hour."""
    ra = resp.headers.get("Retry-After")
    wait: float | None = None
    if ra:
        try:
            wait = float(ra)
        except ValueError:
            try:
                wait = parsedate_to_datetime(ra).timestamp() - now
            except (TypeError, ValueError):
                wait = None
    if wait is None:
        reset = resp.headers.get("X-RateLimit-Reset")
        try:
            wait = float(reset) - now if reset else None
        except ValueError:
            wait = None
    return min(max(wait if wait is not None else 60.0, 1.0), 3600.0)


def _transport_error(exc: Exception) -> SourceError:
    if isinstance(exc, httpx.TimeoutException):
        return SourceError("timeout", "no answer in time")
    return SourceError("connect", type(exc).__name__)


class _ApiSource:
    """What both vendor APIs share: a name, the currency rows must be in, an HTTP client."""

    def __init__(
        self,
        cfg: VercelCharges | OpenAICosts,
        token: str,
        *,
        currency: str,
        environment_tag: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = cfg.name
        self.currency = currency
        self.environment_tag = environment_tag
        self.http = _Http(cfg.base_url, token, cfg.timeout, transport=transport, clock=clock)

    async def aclose(self) -> None:
        await self.http.aclose()

    def window(self, first: date, end: date) -> tuple[datetime, datetime]:
        self.http.check_blocked()
        return utc_day(first), utc_day(end)


class VercelChargesSource(_ApiSource):
    """GET /v1/billing/charges?from&to: FOCUS 1.3 JSONL, streamed (gzip when offered)."""

    def __init__(self, cfg: VercelCharges, token: str, **kwargs: Any) -> None:
        super().__init__(cfg, token, **kwargs)
        self.team_id = cfg.team_id

    async def fetch(self, first: date, end: date) -> Delivery:
        window = self.window(first, end)
        params = {
            "from": window[0].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "to": window[1].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
        if self.team_id:
            params["teamId"] = self.team_id
        norm = Normalizer(self.currency, window=window, environment_tag=self.environment_tag)
        try:
            async with self.http.client.stream(
                "GET", "/v1/billing/charges", params=params, headers={"Accept-Encoding": "gzip"}
            ) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise self.http.fail(resp)
                lines: list[str] = []
                n = 0
                async for line in resp.aiter_lines():
                    lines.append(line)
                    if len(lines) >= CHUNK:
                        read_jsonl(lines, norm, f"charges line {n + 1}+")
                        n += len(lines)
                        lines = []
                        await asyncio.sleep(0)
                read_jsonl(lines, norm, f"charges line {n + 1}+")
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        return Delivery(
            norm.batch, [first + timedelta(days=i) for i in range((end - first).days)], 1
        )


class OpenAICostsSource(_ApiSource):
    """GET /v1/organization/costs: daily buckets grouped by line item, followed page by page."""

    max_pages = 50

    async def fetch(self, first: date, end: date) -> Delivery:
        window = self.window(first, end)
        norm = Normalizer(self.currency, window=window, provider="OpenAI")
        params: dict[str, Any] = {
            "start_time": int(window[0].timestamp()),
            "end_time": int(window[1].timestamp()),
            "bucket_width": "1d",
            "group_by": "line_item",
            "limit": 180,
        }
        requests = 0
        for _ in range(self.max_pages):
            try:
                resp = await self.http.client.get("/v1/organization/costs", params=params)
            except httpx.HTTPError as exc:
                raise _transport_error(exc) from None
            requests += 1
            if resp.status_code != 200:
                raise self.http.fail(resp)
            try:
                import json

                doc = json.loads(resp.content, parse_float=Decimal)
            except ValueError:
                raise SourceError("malformed", "costs page is not JSON") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
                raise SourceError("malformed", "costs page has no data list")
            for i, bucket in enumerate(doc["data"]):
                _bucket_rows(bucket, norm, f"costs page {requests} bucket {i}")
            await asyncio.sleep(0)
            if not doc.get("has_more"):
                break
            nxt = doc.get("next_page")
            if not isinstance(nxt, str) or not nxt:
                raise SourceError("malformed", "has_more without next_page")
            params["page"] = nxt
        else:
            raise SourceError("malformed", f"more than {self.max_pages} pages")
        return Delivery(
            norm.batch, [first + timedelta(days=i) for i in range((end - first).days)], requests
        )


def _bucket_rows(bucket: object, norm: Normalizer, where: str) -> None:
    """An OpenAI cost bucket as FOCUS rows (usage, 'AI and Machine Learning')."""
    if not isinstance(bucket, dict):
        norm.batch.reject(RowError("not_an_object", "bucket is not an object"), where)
        return
    start, end, results = bucket.get("start_time"), bucket.get("end_time"), bucket.get("results")
    if not isinstance(start, int) or not isinstance(end, int) or not isinstance(results, list):
        norm.batch.reject(
            RowError("missing_column", "bucket needs start_time, end_time, results"), where
        )
        return
    period = (
        datetime.fromtimestamp(start, UTC).isoformat(),
        datetime.fromtimestamp(end, UTC).isoformat(),
    )
    for j, r in enumerate(results):
        if not isinstance(r, dict) or not isinstance(r.get("amount"), dict):
            norm.batch.reject(
                RowError("missing_column", "result has no amount"), f"{where} result {j}"
            )
            continue
        amount = r["amount"]
        value = amount.get("value")  # a number, or sometimes a numeric string
        norm.add(
            {
                "BilledCost": value,
                "EffectiveCost": value,
                "BillingCurrency": str(amount.get("currency") or "").upper(),
                "ChargeCategory": "Usage",
                "ChargePeriodStart": period[0],
                "ChargePeriodEnd": period[1],
                "ServiceName": r.get("line_item") or "Unattributed",
                "ServiceCategory": "AI and Machine Learning",
                "ConsumedQuantity": r.get("quantity"),
                "ConsumedUnit": r.get("quantity_unit"),
            },
            f"{where} result {j}",
        )


@dataclass(slots=True)
class _Parsed:
    stamp: tuple[int, int]
    batch: Batch


@dataclass(slots=True)
class FolderSource:
    """FOCUS files in a folder, re-read only when they change."""

    cfg: FocusFolder
    currency: str
    environment_tag: str | None
    name: str = ""
    cache: dict[Path, _Parsed] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.cfg.name

    async def aclose(self) -> None:
        return None

    async def fetch(self, first: date, end: date) -> Delivery:
        # The whole folder is the delivery: files are read in a thread (they can be large).
        return await asyncio.to_thread(self.scan)

    def scan(self) -> Delivery:
        root = self.cfg.path
        if not root.is_dir():
            raise SourceError("io", f"{root} is not a directory")
        files = sorted(p for p in root.rglob("*") if p.is_file() and _kind(p.name) is not None)
        deliveries: dict[Path, list[Path]] = {}
        for p in files:
            # A file directly in the folder is a delivery; a sub-folder's files are one together.
            rel = p.relative_to(root)
            key = p if len(rel.parts) == 1 else root / rel.parts[0]
            deliveries.setdefault(key, []).append(p)
        parsed: dict[Path, _Parsed] = {}
        out = Batch()
        ordered: list[tuple[float, Path, Batch]] = []
        for key, paths in deliveries.items():
            merged = Batch()
            newest = 0.0
            for p in paths:
                try:
                    st = p.stat()
                except OSError:
                    continue  # removed while scanning
                stamp = (st.st_mtime_ns, st.st_size)
                have = self.cache.get(p)
                if have is None or have.stamp != stamp:
                    have = _Parsed(stamp, self._read(p))
                parsed[p] = have
                merged.merge(have.batch)
                newest = max(newest, st.st_mtime)
            ordered.append((newest, key, merged))
        self.cache = parsed
        # For each provider and day, the newest delivery that has it wins.
        book: DayBook = {}
        for _, _, b in sorted(ordered, key=lambda x: (x[0], str(x[1]))):
            for day, keys in b.days.items():
                providers = {k.provider for k in keys}
                older = book.get(day, {})
                kept = {k: t for k, t in older.items() if k.provider not in providers}
                kept.update(keys)
                book[day] = kept
            out.merge_tallies(b)
        out.days = book
        return Delivery(out, None, 0)

    def _read(self, path: Path) -> Batch:
        norm = Normalizer(self.currency, environment_tag=self.environment_tag)
        kind = _kind(path.name)
        where = path.name
        try:
            raw: Any = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # noqa: SIM115
            with raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
                if kind == "csv":
                    read_csv(text, norm, where)
                else:
                    read_jsonl(text, norm, where)
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            # A truncated gzip or a file not in UTF-8: the file counts as one bad delivery.
            norm.batch = Batch()
            norm.batch.reject(
                RowError("bad_json", f"unreadable file ({type(exc).__name__})"), where
            )
            log.warning("unreadable FOCUS file", extra={"file": where, "error": type(exc).__name__})
        return norm.batch


def _kind(name: str) -> str | None:
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith(".csv"):
        return "csv"
    if base.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return None


Source = VercelChargesSource | OpenAICostsSource | FolderSource
