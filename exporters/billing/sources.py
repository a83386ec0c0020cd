"""Where charges come from (the vendor adapters): Vercel's FOCUS charges, OpenAI's organization
costs, FOCUS files in a folder.

The two APIs go through `common.upstream.Upstream` (bearer token from its file, one closed set
of error reasons, rate-limit windows, request counts). A fetch either returns the whole
delivery or raises — `UpstreamError` (an API), `OSError` (a folder, reason `io`) or
`ValueError` (`malformed`) — so a stream cut mid-way, a page that fails or a 429 leaves the
ledger's previous copy of those days in place and nothing half-read is used.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from common.config import describe_os_error
from common.upstream import (
    REASONS,
    ResetParser,
    SecretFileAuth,
    Upstream,
    UpstreamError,
    reset_delta_seconds,
    reset_epoch_seconds,
)
from exporters.billing.config import BillingConfig, FocusFolder, OpenAICosts, VercelCharges
from exporters.billing.focus import Batch, DayBook, Normalizer, RowError, read_csv, read_jsonl

log = logging.getLogger("exporters.billing.sources")

# Why a source's refresh failed (the `reason` label): the shared client's reasons, and `io`
# for a folder that cannot be read.
ERROR_REASONS = (*REASONS, "io")
# Rows processed between yields to the event loop, so /metrics answers during a big fetch.
CHUNK = 5000
USER_AGENT = "wsinfra-billing-exporter"
# After a 429 that says nothing, leave the API alone this long; never longer than an hour.
DEFAULT_BLOCK = 60.0
MAX_BLOCK = 3600.0


def vercel_reset(value: str, now: float) -> float | None:
    """Vercel's X-RateLimit-Reset is epoch seconds; a reset already past (clock skew) still
    waits a second."""
    at = reset_epoch_seconds(value, now)
    return None if at is None else max(at, now + 1.0)


# OpenAI sends Retry-After with a 429 (and `x-ratelimit-reset-*` durations such as "6m0s",
# not an X-RateLimit-Reset); should it send X-RateLimit-Reset, it would be a duration too.
openai_reset: ResetParser = reset_delta_seconds


# What a fetch raises when the source (not our code) failed; common.refresh counts the same.
FETCH_ERRORS = (UpstreamError, OSError, ValueError)


def failure(exc: Exception) -> tuple[str, str]:
    """A failed fetch's (reason, detail), as the refresh loop counts it."""
    if isinstance(exc, UpstreamError):
        return exc.reason, exc.detail
    if isinstance(exc, OSError):
        return "io", describe_os_error(exc)
    return "malformed", str(exc)


@dataclass(slots=True)
class Delivery:
    """A fetch's result. `covered` are the days it speaks for (replaced in the ledger, empty
    ones included); None means it is the source's whole data (a folder rescan)."""

    batch: Batch
    covered: list[date] | None


def utc_day(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _days(first: date, end: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((end - first).days)]


def _cut(endpoint: str, exc: httpx.HTTPError) -> UpstreamError:
    """What the shared client leaves to us: an httpx error while we read the body (a gzip
    stream that does not decode) is a delivery cut short, as a dropped connection is."""
    return UpstreamError("connect", f"{endpoint}: {type(exc).__name__}")


class _ApiSource:
    """What both vendor APIs share: a name, the currency rows must be in, the shared client."""

    def __init__(
        self,
        cfg: VercelCharges | OpenAICosts,
        *,
        reset: ResetParser,
        currency: str,
        environment_tag: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = cfg.name
        self.currency = currency
        self.environment_tag = environment_tag
        self.http = Upstream(
            cfg.base_url,
            auth=SecretFileAuth(bearer=cfg.token_file),
            timeout=cfg.timeout,
            user_agent=USER_AGENT,
            reset=reset,
            default_block=DEFAULT_BLOCK,
            max_block=MAX_BLOCK,
            transport=transport,
            clock=clock,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def requests(self) -> int:
        """HTTP requests sent to the API so far (failed ones included)."""
        return sum(self.http.stats.requests.values())


class VercelChargesSource(_ApiSource):
    """GET /v1/billing/charges?from&to: FOCUS 1.3 JSONL, streamed (gzip when offered)."""

    endpoint = "charges"

    def __init__(self, cfg: VercelCharges, **kwargs: Any) -> None:
        super().__init__(cfg, reset=vercel_reset, **kwargs)
        self.team_id = cfg.team_id

    async def fetch(self, first: date, end: date) -> Delivery:
        window = utc_day(first), utc_day(end)
        params = {
            "from": window[0].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "to": window[1].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
        if self.team_id:
            params["teamId"] = self.team_id
        norm = Normalizer(self.currency, window=window, environment_tag=self.environment_tag)
        try:
            async with self.http.stream(
                self.endpoint,
                "/v1/billing/charges",
                params=params,
                headers={"Accept-Encoding": "gzip"},
            ) as resp:
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
            raise _cut(self.endpoint, exc) from None
        return Delivery(norm.batch, _days(first, end))


class OpenAICostsSource(_ApiSource):
    """GET /v1/organization/costs: daily buckets grouped by line item, followed page by page."""

    endpoint = "costs"
    max_pages = 50
    page_size = 180  # the API's largest `limit`

    def __init__(self, cfg: OpenAICosts, **kwargs: Any) -> None:
        super().__init__(cfg, reset=openai_reset, **kwargs)

    async def fetch(self, first: date, end: date) -> Delivery:
        window = utc_day(first), utc_day(end)
        norm = Normalizer(self.currency, window=window, provider="OpenAI")
        params: dict[str, Any] = {
            "start_time": int(window[0].timestamp()),
            "end_time": int(window[1].timestamp()),
            "bucket_width": "1d",
            "group_by": "line_item",
            "limit": self.page_size,
        }
        for page in range(1, self.max_pages + 1):
            doc = await self._page(params)
            for i, bucket in enumerate(doc["data"]):
                _bucket_rows(bucket, norm, f"costs page {page} bucket {i}")
            await asyncio.sleep(0)
            if not doc.get("has_more"):
                break
            nxt = doc.get("next_page")
            if not isinstance(nxt, str) or not nxt:
                raise UpstreamError("malformed", "costs: has_more without next_page")
            params["page"] = nxt
        else:
            raise UpstreamError("malformed", f"costs: more than {self.max_pages} pages")
        return Delivery(norm.batch, _days(first, end))

    async def _page(self, params: dict[str, Any]) -> dict[str, Any]:
        # Read as bytes and decoded here: money must be parsed as Decimal, never float.
        try:
            async with self.http.stream(
                self.endpoint, "/v1/organization/costs", params=params
            ) as resp:
                body = await resp.aread()
        except httpx.HTTPError as exc:
            raise _cut(self.endpoint, exc) from None
        try:
            doc = json.loads(body, parse_float=Decimal)
        except ValueError:
            raise UpstreamError("malformed", "costs: page is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
            raise UpstreamError("malformed", "costs: page has no data list")
        return doc


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

    def requests(self) -> int:
        return 0

    async def fetch(self, first: date, end: date) -> Delivery:
        # The whole folder is the delivery: files are read in a thread (they can be large).
        return await asyncio.to_thread(self.scan)

    def scan(self) -> Delivery:
        root = self.cfg.path
        if not root.is_dir():
            raise NotADirectoryError(f"{root} is not a directory")
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
        return Delivery(out, None)

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


def make_sources(
    cfg: BillingConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> list[Source]:
    """The configured sources, in config order (Vercel, OpenAI, then the folders)."""
    tag = cfg.recommendations.environment_tag
    out: list[Source] = []
    if cfg.vercel is not None:
        out.append(
            VercelChargesSource(
                cfg.vercel,
                currency=cfg.currency,
                environment_tag=tag,
                transport=transport,
                clock=clock,
            )
        )
    if cfg.openai is not None:
        out.append(
            OpenAICostsSource(cfg.openai, currency=cfg.currency, transport=transport, clock=clock)
        )
    out.extend(FolderSource(f, cfg.currency, tag) for f in cfg.folders)
    return out
