"""FOCUS rows → validated charges → per-day totals.

Money is `Decimal` from the wire to the report: JSON numbers are parsed as Decimal (never
float) and CSV cells are Decimal strings. A row that lacks a column we need, or carries a bad
value, is counted with its reason and skipped: never guessed, never half-summed.

A charge is attributed to the UTC days its charge period covers (FOCUS periods are UTC,
start-inclusive, end-exclusive); a period longer than a day is spread evenly over its days, with
the rounding remainder on the last day so the parts add up to the row exactly.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

CHARGE_CATEGORIES = ("usage", "purchase", "tax", "credit", "adjustment")
_CHARGE_CATEGORY = {c.capitalize(): c for c in CHARGE_CATEGORIES}

# FOCUS ServiceCategory values, as label values (snake case). Unknown or missing → "other":
# the money still counts; only its category is unknown.
SERVICE_CATEGORIES = {
    name: re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    for name in (
        "AI and Machine Learning",
        "Analytics",
        "Business Applications",
        "Compute",
        "Databases",
        "Developer Tools",
        "Multicloud",
        "Identity",
        "Integration",
        "Internet of Things",
        "Management and Governance",
        "Media",
        "Migration",
        "Mobile",
        "Networking",
        "Security",
        "Storage",
        "Web",
        "Other",
    )
}

# Why a row was skipped: a bounded set (they are label values).
REJECT_REASONS = (
    "not_an_object",
    "bad_json",
    "missing_column",
    "bad_number",
    "bad_timestamp",
    "bad_period",
    "bad_charge_category",
    "currency_mismatch",
    "outside_window",
)

# The longest charge period we spread over days; anything longer is a bad row, not a year of
# silent smearing.
MAX_PERIOD_DAYS = 366
_CENT_SCALE = Decimal("0.0000000001")
ENVIRONMENTS = ("production", "preview", "development")


class RowError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Key:
    """What a day's totals are kept apart by (all bounded once services are capped top-N)."""

    provider: str
    service_category: str
    service: str
    charge_category: str
    environment: str  # "" when the row has no environment tag
    unit: str  # ConsumedUnit ("" when null)


@dataclass(slots=True)
class Totals:
    billed: Decimal = Decimal(0)
    effective: Decimal = Decimal(0)
    quantity: Decimal = Decimal(0)
    rows: int = 0

    def add(self, other: Totals) -> None:
        self.billed += other.billed
        self.effective += other.effective
        self.quantity += other.quantity
        self.rows += other.rows


DayBook = dict[date, dict[Key, Totals]]


@dataclass(slots=True)
class Batch:
    """What one delivery (an API answer, a file) held: totals by day, rejects by reason, and
    the end of the newest charge period seen."""

    days: DayBook = field(default_factory=dict)
    rows: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    newest: datetime | None = None

    def reject(self, err: RowError, where: str) -> None:
        self.rejected[err.reason] = self.rejected.get(err.reason, 0) + 1
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{where}: {err}")

    def merge(self, other: Batch) -> None:
        for day, keys in other.days.items():
            mine = self.days.setdefault(day, {})
            for k, t in keys.items():
                have = mine.get(k)
                if have is None:
                    mine[k] = Totals(t.billed, t.effective, t.quantity, t.rows)
                else:
                    have.add(t)
        self.merge_tallies(other)

    def merge_tallies(self, other: Batch) -> None:
        """Everything but the day totals: rows, rejects, first errors and the newest period."""
        self.rows += other.rows
        for r, n in other.rejected.items():
            self.rejected[r] = self.rejected.get(r, 0) + n
        self.first_errors = (self.first_errors + other.first_errors)[:5]
        if other.newest is not None and (self.newest is None or other.newest > self.newest):
            self.newest = other.newest


def label_value(value: str, limit: int = 80) -> str:
    """A provider or service name as a tidy label value (names come from vendor data)."""
    text = " ".join(value.split())[:limit]
    return text or "unknown"


def provider_label(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:50] or "unknown"


def to_decimal(value: object, column: str) -> Decimal:
    if type(value) is str:  # the common case first (CSV cells)
        try:
            d = Decimal(value)  # surrounding whitespace is allowed by Decimal itself
        except InvalidOperation:
            if not value.strip():
                raise RowError("missing_column", f"{column} is empty") from None
            raise RowError("bad_number", f"{column} is not a number") from None
        if d.is_finite():
            return d
        raise RowError("bad_number", f"{column} is not a number")
    if isinstance(value, Decimal):
        if value.is_finite():
            return value
        raise RowError("bad_number", f"{column} is not a number")
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        # Never reached from our parsers (JSON numbers arrive as Decimal); kept exact anyway.
        return Decimal(repr(value))
    if value is None:
        raise RowError("missing_column", f"{column} is empty")
    raise RowError("bad_number", f"{column} is not a number")


class Normalizer:
    """Validates rows and adds them to a Batch. One per delivery; caches parsed timestamps
    (a day's thousands of rows share a handful of period strings)."""

    def __init__(
        self,
        currency: str = "USD",
        *,
        window: tuple[datetime, datetime] | None = None,
        environment_tag: str | None = None,
        provider: str | None = None,
    ) -> None:
        self.currency = currency
        self.window = window
        self.environment_tag = environment_tag
        self.provider = provider  # for sources whose rows do not name one
        self.batch = Batch()
        self._times: dict[str, datetime] = {}
        self._keys: dict[tuple[str, ...], Key] = {}
        self._envs: dict[str, str] = {}

    def _time(self, value: object, column: str) -> datetime:
        if not isinstance(value, str) or not value:
            raise RowError("missing_column" if not value else "bad_timestamp", f"{column} is empty")
        got = self._times.get(value)
        if got is not None:
            return got
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            raise RowError("bad_timestamp", f"{column} is not ISO 8601") from None
        # FOCUS says UTC; a naive time is read as UTC, an offset is converted to it.
        t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
        if len(self._times) > 10_000:
            self._times.clear()
        self._times[value] = t
        return t

    def add(self, row: object, where: str) -> None:
        try:
            self._add(row)
        except RowError as err:
            self.batch.reject(err, where)

    def _add(self, row: object) -> None:
        if not isinstance(row, Mapping):
            raise RowError("not_an_object", "a row must be an object")
        get = row.get
        currency = get("BillingCurrency")
        if not currency:
            raise RowError("missing_column", "BillingCurrency is empty")
        if str(currency).upper() != self.currency:
            raise RowError(
                "currency_mismatch",
                f"BillingCurrency {str(currency)[:8]!r}, expected {self.currency}",
            )
        charge = get("ChargeCategory")
        cat = _CHARGE_CATEGORY.get(charge) if isinstance(charge, str) else None
        if cat is None:
            raise RowError(
                "bad_charge_category",
                "ChargeCategory must be one of Usage, Purchase, Tax, Credit, Adjustment",
            )
        start = self._time(get("ChargePeriodStart"), "ChargePeriodStart")
        end = self._time(get("ChargePeriodEnd"), "ChargePeriodEnd")
        if end <= start:
            raise RowError("bad_period", "ChargePeriodEnd is not after ChargePeriodStart")
        if self.window is not None and not (self.window[0] <= start < self.window[1]):
            raise RowError("outside_window", "ChargePeriodStart outside the requested window")
        billed = to_decimal(get("BilledCost"), "BilledCost")
        effective = to_decimal(get("EffectiveCost"), "EffectiveCost")
        provider = get("ServiceProviderName") or get("ProviderName") or self.provider
        if not provider or not isinstance(provider, str):
            raise RowError("missing_column", "ServiceProviderName (or ProviderName) is empty")
        service = get("ServiceName")
        if not service or not isinstance(service, str):
            raise RowError("missing_column", "ServiceName is empty")
        qty_raw = get("ConsumedQuantity")
        quantity = (
            Decimal(0)
            if qty_raw is None or qty_raw == ""
            else to_decimal(qty_raw, "ConsumedQuantity")
        )
        unit = get("ConsumedUnit") or ""
        tags = get("Tags")
        env = self._environment(tags)
        svc_cat = get("ServiceCategory") or "Other"
        # Rows repeat a few hundred keys: build each Key (and its tidy labels) once.
        raw = (
            provider,
            svc_cat if isinstance(svc_cat, str) else "?",
            service,
            cat,
            env,
            unit if isinstance(unit, str) else str(unit),
        )
        key = self._keys.get(raw)
        if key is None:
            key = Key(
                provider_label(provider),
                SERVICE_CATEGORIES.get(raw[1], "other"),
                label_value(service),
                cat,
                env,
                label_value(raw[5], 40) if raw[5] else "",
            )
            if len(self._keys) > 100_000:
                self._keys.clear()
            self._keys[raw] = key
        first = start.date()
        last = (end - timedelta(microseconds=1)).date()
        days = (last - first).days + 1
        if days > MAX_PERIOD_DAYS:
            raise RowError("bad_period", f"charge period longer than {MAX_PERIOD_DAYS} days")
        b = self.batch
        b.rows += 1
        if b.newest is None or end > b.newest:
            b.newest = end
        if days == 1:
            self._put(first, key, billed, effective, quantity)
            return
        n = Decimal(days)
        parts = [
            (billed / n).quantize(_CENT_SCALE),
            (effective / n).quantize(_CENT_SCALE),
            (quantity / n).quantize(_CENT_SCALE),
        ]
        for i in range(days):
            if i == days - 1:  # the remainder: the parts add up to the row exactly
                parts = [
                    billed - parts[0] * (days - 1),
                    effective - parts[1] * (days - 1),
                    quantity - parts[2] * (days - 1),
                ]
            self._put(first + timedelta(days=i), key, parts[0], parts[1], parts[2], count=i == 0)

    def _put(
        self,
        day: date,
        key: Key,
        billed: Decimal,
        effective: Decimal,
        quantity: Decimal,
        count: bool = True,
    ) -> None:
        keys = self.batch.days.get(day)
        if keys is None:
            keys = self.batch.days[day] = {}
        t = keys.get(key)
        if t is None:
            keys[key] = Totals(billed, effective, quantity, 1 if count else 0)
        else:
            t.billed += billed
            t.effective += effective
            t.quantity += quantity
            t.rows += 1 if count else 0

    def _environment(self, tags: object) -> str:
        if self.environment_tag is None or tags is None:
            return ""
        # CSV: a serialized JSON object; the same few strings again and again.
        if isinstance(tags, str):
            got = self._envs.get(tags)
            if got is None:
                got = self._tag_environment(tags)
                if len(self._envs) > 10_000:
                    self._envs.clear()
                self._envs[tags] = got
            return got
        if not isinstance(tags, Mapping):
            return ""
        return self._env_of(tags)

    def _tag_environment(self, text: str) -> str:
        if not text.strip():
            return ""
        try:
            tags = json.loads(text)
        except ValueError:
            return ""
        return self._env_of(tags)

    def _env_of(self, tags: object) -> str:
        if not isinstance(tags, Mapping):
            return ""
        value = tags.get(self.environment_tag)
        if not isinstance(value, str) or not value:
            return ""
        value = value.lower()
        return value if value in ENVIRONMENTS else "other"


def read_jsonl(lines: Iterable[str | bytes], norm: Normalizer, where: str) -> None:
    """Stream JSON Lines into the normalizer: numbers become Decimal, one bad line one reject."""
    loads = json.JSONDecoder(parse_float=Decimal).decode
    for n, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                norm.batch.reject(RowError("bad_json", "not UTF-8"), f"{where}:{n}")
                continue
        if not line.strip():
            continue
        try:
            row = loads(line)
        except ValueError:
            norm.batch.reject(RowError("bad_json", "not a JSON object"), f"{where}:{n}")
            continue
        norm.add(row, f"{where}:{n}")


def read_csv(lines: Iterable[str], norm: Normalizer, where: str) -> None:
    """Stream a FOCUS CSV (header row first) into the normalizer; empty cells are nulls."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    header = [h.strip().lstrip("\ufeff") for h in header]
    width = len(header)
    for n, cells in enumerate(reader, 2):
        if not cells:
            continue
        if len(cells) != width:
            norm.batch.reject(
                RowError("missing_column", f"{len(cells)} cells, header has {width}"),
                f"{where}:{n}",
            )
            continue
        norm.add(dict(zip(header, cells, strict=True)), f"{where}:{n}")
