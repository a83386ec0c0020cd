"""FOCUS rows: validation reasons, Decimal exactness, UTC days, spreading, CSV and JSONL."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporters.billing.focus import REJECT_REASONS, Normalizer, read_csv, read_jsonl


def row(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "BilledCost": "1.10",
        "EffectiveCost": "1.00",
        "BillingCurrency": "USD",
        "ChargeCategory": "Usage",
        "ChargePeriodStart": "2026-10-01T00:00:00Z",
        "ChargePeriodEnd": "2026-10-02T00:00:00Z",
        "ServiceName": "Function Invocations",
        "ServiceCategory": "Compute",
        "ServiceProviderName": "Vercel",
        "ConsumedQuantity": "1000",
        "ConsumedUnit": "Invocations",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not ...}


def one(r: object, **kw: Any) -> Normalizer:
    n = Normalizer("USD", **kw)
    n.add(r, "test")
    return n


def test_a_valid_row_lands_on_its_utc_day_in_decimal() -> None:
    n = one(row(BilledCost=Decimal("0.1"), EffectiveCost="0.2"))
    [(day, keys)] = n.batch.days.items()
    assert day == date(2026, 10, 1)
    [(key, t)] = keys.items()
    assert (key.provider, key.service_category, key.charge_category, key.unit) == (
        "vercel",
        "compute",
        "usage",
        "Invocations",
    )
    assert (t.billed, t.effective, t.quantity, t.rows) == (
        Decimal("0.1"),
        Decimal("0.2"),
        Decimal(1000),
        1,
    )


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"BilledCost": ...}, "missing_column"),
        ({"BilledCost": "abc"}, "bad_number"),
        ({"EffectiveCost": "NaN"}, "bad_number"),
        ({"BillingCurrency": "EUR"}, "currency_mismatch"),
        ({"BillingCurrency": ...}, "missing_column"),
        ({"ChargeCategory": "usage-ish"}, "bad_charge_category"),
        ({"ChargePeriodStart": "yesterday"}, "bad_timestamp"),
        ({"ChargePeriodEnd": "2026-10-01T00:00:00Z"}, "bad_period"),
        ({"ChargePeriodEnd": "2028-10-01T00:00:00Z"}, "bad_period"),
        ({"ServiceName": ""}, "missing_column"),
        ({"ServiceProviderName": ...}, "missing_column"),
        ({"ConsumedQuantity": "lots"}, "bad_number"),
    ],
)
def test_a_bad_row_is_counted_with_its_reason_and_not_summed(
    over: dict[str, Any], reason: str
) -> None:
    n = one(row(**over))
    assert n.batch.rejected == {reason: 1}
    assert n.batch.days == {}
    assert n.batch.rows == 0
    assert reason in REJECT_REASONS
    assert n.batch.first_errors[0].startswith("test: ")


def test_provider_name_falls_back_to_the_deprecated_column_and_categories_are_kept_apart() -> None:
    n = Normalizer("USD")
    n.add(row(ServiceProviderName=..., ProviderName="Amazon Web Services"), "a")
    n.add(row(ChargeCategory="Credit", BilledCost="-0.50", EffectiveCost="-0.50"), "b")
    n.add(row(ServiceCategory="Something New"), "c")
    keys = n.batch.days[date(2026, 10, 1)]
    assert {(k.provider, k.charge_category, k.service_category) for k in keys} == {
        ("amazon_web_services", "usage", "compute"),
        ("vercel", "credit", "compute"),
        ("vercel", "usage", "other"),
    }


def test_offsets_are_converted_to_utc_so_the_row_lands_in_the_right_month() -> None:
    # 31 October 23:00 at UTC-2 is 1 November 01:00 UTC.
    n = one(
        row(
            ChargePeriodStart="2026-10-31T23:00:00-02:00",
            ChargePeriodEnd="2026-11-01T00:00:00-02:00",
        )
    )
    assert list(n.batch.days) == [date(2026, 11, 1)]
    # A naive time is read as UTC, as FOCUS requires it to be.
    n = one(row(ChargePeriodStart="2026-10-31T23:00:00", ChargePeriodEnd="2026-11-01T00:00:00"))
    assert list(n.batch.days) == [date(2026, 10, 31)]


def test_a_month_long_row_is_spread_over_its_days_and_adds_up_exactly() -> None:
    n = one(
        row(
            BilledCost="100.00",
            EffectiveCost="99.99",
            ConsumedQuantity="7",
            ChargePeriodStart="2026-11-01T00:00:00Z",
            ChargePeriodEnd="2026-12-01T00:00:00Z",
        )
    )
    days = n.batch.days
    assert sorted(days) == [date(2026, 11, d) for d in range(1, 31)]
    totals = [t for keys in days.values() for t in keys.values()]
    assert sum((t.billed for t in totals), Decimal(0)) == Decimal("100.00")
    assert sum((t.effective for t in totals), Decimal(0)) == Decimal("99.99")
    assert sum((t.quantity for t in totals), Decimal(0)) == Decimal(7)
    assert sum(t.rows for t in totals) == 1  # one input row, counted once
    assert n.batch.newest == datetime(2026, 12, 1, tzinfo=UTC)


def test_outside_the_requested_window_is_rejected() -> None:
    window = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC))
    n = one(row(), window=window)
    assert n.batch.rejected == {"outside_window": 1}


def test_environment_tag_is_bounded() -> None:
    tags = {"Environment": "Preview"}
    assert (
        next(
            iter(one(row(Tags=tags), environment_tag="Environment").batch.days[date(2026, 10, 1)])
        ).environment
        == "preview"
    )
    odd = one(row(Tags={"Environment": "feature/x-123"}), environment_tag="Environment")
    assert next(iter(odd.batch.days[date(2026, 10, 1)])).environment == "other"
    csv_style = one(row(Tags='{"Environment": "production"}'), environment_tag="Environment")
    assert next(iter(csv_style.batch.days[date(2026, 10, 1)])).environment == "production"


def test_jsonl_numbers_are_read_as_decimal_not_float() -> None:
    # 0.1 + 0.2 in float is 0.30000000000000004; the ledger must say 0.3.
    lines = [
        json.dumps(row(BilledCost=None, EffectiveCost=None))
        .replace("null", "0.1", 1)
        .replace("null", "0.1", 1)
    ]
    lines.append(lines[0].replace("0.1", "0.2", 1))
    n = Normalizer("USD")
    read_jsonl(lines, n, "x")
    [t] = n.batch.days[date(2026, 10, 1)].values()
    assert t.billed == Decimal("0.3")


def test_jsonl_bad_lines_are_rejected_one_by_one() -> None:
    n = Normalizer("USD")
    read_jsonl([json.dumps(row()), "{not json", "", "[1,2]", json.dumps(row()).encode()], n, "f")
    assert n.batch.rows == 2
    assert n.batch.rejected == {"bad_json": 1, "not_an_object": 1}


def test_csv_with_bom_empty_cells_and_a_short_line() -> None:
    text = (
        "\ufeffBilledCost,EffectiveCost,BillingCurrency,ChargeCategory,ChargePeriodStart,ChargePeriodEnd,"
        "ServiceName,ServiceProviderName,ConsumedQuantity,ConsumedUnit,Tags\n"
        "1.25,1.25,USD,Usage,2026-10-01T00:00:00Z,2026-10-02T00:00:00Z,Disk,Supabase,,,\n"
        "2.50,2.50,USD,Tax,2026-10-01T00:00:00Z,2026-10-02T00:00:00Z,Tax,Supabase,,,\n"
        "3,3,USD\n"
    )
    n = Normalizer("USD")
    read_csv(io.StringIO(text), n, "inv.csv")
    assert n.batch.rows == 2
    assert n.batch.rejected == {"missing_column": 1}
    assert "inv.csv:4" in n.batch.first_errors[0]
    got = {k.charge_category: t.billed for k, t in n.batch.days[date(2026, 10, 1)].items()}
    assert got == {"usage": Decimal("1.25"), "tax": Decimal("2.50")}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=6)
    ),
    max_leaves=20,
)
focus_like = st.fixed_dictionaries(
    {},
    optional={
        k: json_values
        | st.sampled_from(["USD", "Usage", "Credit", "2026-10-01T00:00:00Z", "1.5", ""])
        for k in (
            "BilledCost",
            "EffectiveCost",
            "BillingCurrency",
            "ChargeCategory",
            "ChargePeriodStart",
            "ChargePeriodEnd",
            "ServiceName",
            "ServiceProviderName",
            "ServiceCategory",
            "ConsumedQuantity",
            "ConsumedUnit",
            "Tags",
        )
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values | focus_like, max_size=10))
def test_any_json_is_either_summed_or_rejected_never_a_crash(rows: list[Any]) -> None:
    n = Normalizer("USD", environment_tag="Environment")
    read_jsonl([json.dumps(r) for r in rows], n, "p")
    assert n.batch.rows + sum(n.batch.rejected.values()) == len(rows)
    assert set(n.batch.rejected) <= set(REJECT_REASONS)
    for keys in n.batch.days.values():
        for t in keys.values():
            assert isinstance(t.billed, Decimal)
            assert t.billed.is_finite()
