"""The sources against the strict fakes: what a refresh asks, what it keeps, how it fails."""

from __future__ import annotations

import gzip
import json
import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from exporters.billing import figures
from fakes.billing_api import BillingData, supabase_invoice, write_focus_csv
from tests.billing.helpers import OPENAI_KEY, TEAM, VERCEL_TOKEN, rig

NOV = date(2026, 11, 1)


def mtd(r: Any, provider: str) -> Decimal:
    return Decimal(r.job.figures.current.billed(provider))


def expected_vercel(data: BillingData, first: date, last: date) -> Decimal:
    """Independently: the fake's rows for those days, summed."""
    total = Decimal(0)
    d = first
    while d <= last:
        total += sum((Decimal(str(x["BilledCost"])) for x in data.vercel_day(d)), Decimal(0))
        d += timedelta(days=1)
    return total


async def test_vercel_charges_strict_request_gzip_and_exact_sums(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        assert await r.job.refresh()
        [(_, q)] = [x for x in r.state.requests if x[0] == "/v1/billing/charges"]
        # Whole months: last month's first day to tomorrow, team-scoped, as the docs spell it.
        assert q == {
            "from": "2026-10-01T00:00:00.000Z",
            "to": "2026-11-27T00:00:00.000Z",
            "teamId": TEAM,
        }
        assert mtd(r, "vercel") == expected_vercel(r.state.data, NOV, date(2026, 11, 26))
        assert r.job.figures.previous.billed("vercel") == expected_vercel(
            r.state.data, date(2026, 10, 1), date(2026, 10, 31)
        )
        assert r.value("billing_source_up", source="vercel") == 1
        assert (
            r.value("billing_rows_total", source="vercel") == 57 * 10 + 2
        )  # 57 days x 10, 2 seats


async def test_the_fake_is_strict_like_vercel(tmp_path: Path) -> None:
    import httpx

    async with rig(tmp_path) as r:
        client: httpx.AsyncClient = r.source("vercel").http.client
        ok = {"from": "2026-11-01T00:00:00.000Z", "to": "2026-11-02T00:00:00.000Z", "teamId": TEAM}
        assert (await client.get("/v1/billing/charges", params=ok)).status_code == 200
        bad_auth = await client.get(
            "/v1/billing/charges", params=ok, headers={"Authorization": "Bearer nope"}, auth=None
        )
        assert (bad_auth.status_code, bad_auth.json()["error"]["code"]) == (403, "forbidden")
        extra = await client.get("/v1/billing/charges", params={**ok, "limit": "5"})
        assert (extra.status_code, extra.json()["error"]["code"]) == (400, "bad_request")
        missing = await client.get(
            "/v1/billing/charges", params={"from": ok["from"], "teamId": TEAM}
        )
        assert missing.status_code == 400
        too_long = await client.get(
            "/v1/billing/charges", params={**ok, "from": "2024-01-01T00:00:00.000Z"}
        )
        assert too_long.status_code == 400
        other_team = await client.get("/v1/billing/charges", params={**ok, "teamId": "team_other"})
        assert other_team.status_code == 403
        raw = await client.get(
            "/v1/billing/charges", params=ok, headers={"Accept-Encoding": "gzip"}
        )
        assert raw.headers["content-type"] == "application/jsonl"
        assert raw.headers["content-encoding"] == "gzip"
        lines = raw.text.strip().split("\n")
        assert all(
            set(json.loads(x)) >= {"BilledCost", "ChargePeriodStart", "ServiceProviderName"}
            for x in lines
        )
        assert gzip  # httpx decoded the gzip body for us


async def test_openai_pages_strings_and_strictness(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.state.amounts_as_strings = True
        src = r.source("openai")
        assert src.page_size == 180  # the API's largest page
        # Force several pages: the fake honours `limit`; cut it to 20.
        src.page_size = 20
        assert await r.job.refresh()
        pages = [q for p, q in r.state.requests if p == "/v1/organization/costs"]
        assert len(pages) == 3  # 57 days in pages of 20
        assert "page" not in pages[0]
        assert pages[1]["page"] != pages[2]["page"]
        assert pages[0]["group_by"] == "line_item"
        assert pages[0]["bucket_width"] == "1d"
        expected = sum(
            (
                Decimal(str(x["amount"]["value"]))
                for d in range(1, 27)
                for x in r.state.data.openai_day(date(2026, 11, d))
            ),
            Decimal(0),
        )
        assert mtd(r, "openai") == expected
        services = {k.service for k in r.job.figures.current.totals if k.provider == "openai"}
        assert services == {"gpt-4o-mini, input", "gpt-4o-mini, output", "text-embedding-3-small"}
        client = src.http.client
        orig = client.get
        bad = await orig(
            "/v1/organization/costs",
            params={"start_time": 1},
            headers={"Authorization": "Bearer x"},
            auth=None,
        )
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_api_key"
        assert (
            await orig("/v1/organization/costs", params={"start_time": 1, "limit": 181})
        ).status_code == 400
        assert (
            await orig("/v1/organization/costs", params={"start_time": 1, "bucket_width": "1h"})
        ).status_code == 400
        assert (
            await orig("/v1/organization/costs", params={"start_time": 1, "nope": 1})
        ).status_code == 400
        assert (await orig("/v1/organization/costs", params={})).status_code == 400
        assert client is not None


@pytest.mark.parametrize(
    "fault", ["500", "503", "truncated", "timeout", "429", "malformed-openai", "429-openai"]
)
async def test_a_failing_source_keeps_its_last_good_days_and_says_so(
    tmp_path: Path, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with rig(tmp_path) as r:
        assert await r.job.refresh()
        before = {p: mtd(r, p) for p in ("vercel", "openai", "supabase")}
        # The next day's data would change the figures if it were (half) read.
        r.clock.t += 86400
        target = "openai" if fault.endswith("-openai") else "vercel"
        r.source(target).http.client.timeout = __import__("httpx").Timeout(0.5)
        r.state.faults = [fault.removesuffix("-openai")]
        ok = await r.job.refresh_source(target)
        assert not ok
        assert r.value("billing_source_up", source=target) == 0
        reason = {
            "500": "server",
            "503": "server",
            "truncated": "connect",
            "timeout": "timeout",
            "429": "rate_limited",
            "malformed-openai": "malformed",
            "429-openai": "rate_limited",
        }[fault]
        assert r.value("billing_source_errors_total", source=target, reason=reason) == 1
        assert r.value("billing_up") == 0
        await r.job.publish()
        assert r.job.figures.current.billed(target) == before[target]  # nothing half-read
        if fault.startswith("429"):
            # Backed off: the next refresh does not ask until the window resets.
            n = len(r.state.requests)
            assert not await r.job.refresh_source(target)
            assert len(r.state.requests) == n
            assert r.value("billing_source_errors_total", source=target, reason="rate_limited") == 2
        for secret in (VERCEL_TOKEN, OPENAI_KEY):
            assert secret not in caplog.text
            assert secret not in r.text()


async def test_restated_days_replace_and_overlapping_windows_do_not_double_count(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        assert await r.job.refresh()
        first = mtd(r, "vercel")
        # The same window again (and again): the same figures, not twice them.
        assert await r.job.refresh()
        assert await r.job.refresh()
        assert mtd(r, "vercel") == first
        # Vercel restates 3 November: one row's cost corrected from its value to 0.01.
        day = date(2026, 11, 3)
        rows = r.state.data.vercel_day(day)
        old = Decimal(str(rows[0]["BilledCost"]))
        r.state.data.vercel_override[day] = [{**rows[0], "BilledCost": Decimal("0.01")}, *rows[1:]]
        assert await r.job.refresh()
        assert mtd(r, "vercel") == first - old + Decimal("0.01")
        # A day that vanished entirely (credited back) becomes empty, not stale.
        r.state.data.vercel_override[day] = []
        assert await r.job.refresh()
        day_total = sum((Decimal(str(x["BilledCost"])) for x in rows), Decimal(0))
        assert mtd(r, "vercel") == first - day_total


async def test_partial_today_counts_in_month_to_date_but_not_in_the_run_rate(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        today = date(2026, 11, 26)
        full = r.state.data.vercel_day(today)
        r.state.data.vercel_override[today] = full[:2]  # the morning's rows only
        assert await r.job.refresh()
        snap = r.job.figures
        partial = sum((Decimal(str(x["BilledCost"])) for x in full[:2]), Decimal(0))
        assert (
            snap.current.billed("vercel")
            == expected_vercel(r.state.data, NOV, date(2026, 11, 25)) + partial
        )
        week = expected_vercel(r.state.data, date(2026, 11, 19), date(2026, 11, 25))
        assert snap.current.run_rate["vercel"] == week / 7
        # Month end = so far, minus today's partial usage, plus 5 days (26th-30th) at the rate.
        assert (
            snap.current.projection["vercel"]
            == snap.current.billed("vercel") - partial + week / 7 * 5
        )
        assert snap.current.method["vercel"] == figures.METHOD


async def test_month_boundary_and_an_empty_new_month(tmp_path: Path) -> None:
    # 1 December 00:30 UTC: December has no charges yet; November is now "previous".
    now = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    data = BillingData(start=date(2026, 8, 1), last_day=lambda: date(2026, 11, 30))
    async with rig(tmp_path, now=now, data=data, invoices=False) as r:
        assert await r.job.refresh()
        snap = r.job.figures
        assert snap.current.start == date(2026, 12, 1)
        assert snap.current.billed() == 0
        assert r.sum("billing_month_to_date_billed_cost_usd") == 0
        assert snap.previous.billed("vercel") == expected_vercel(data, NOV, date(2026, 11, 30))
        # The projection still runs on the last 7 days' usage (they are in November).
        week = expected_vercel(data, date(2026, 11, 24), date(2026, 11, 30))
        assert snap.current.projection["vercel"] == week / 7 * 31


async def test_folder_newest_delivery_wins_per_provider_and_day_and_parts_add_up(
    tmp_path: Path,
) -> None:
    import os

    async with rig(tmp_path) as r:
        assert await r.job.refresh()
        oct_total = sum(
            (Decimal(x["BilledCost"]) for x in supabase_invoice(date(2026, 10, 1), 2)), Decimal(0)
        )
        assert r.job.figures.previous.billed("supabase") == oct_total
        # A corrected October invoice dropped next to the first: it replaces, never adds.
        corrected = supabase_invoice(date(2026, 10, 1), 2)
        corrected[0] = {**corrected[0], "BilledCost": "30", "EffectiveCost": "30"}
        path = r.folder / "supabase-2026-10-corrected.csv"
        write_focus_csv(path, corrected)
        later = (r.folder / "supabase-2026-10.csv").stat().st_mtime + 10
        os.utime(path, (later, later))
        assert await r.job.refresh()
        assert r.job.figures.previous.billed("supabase") == oct_total + 5
        # A multi-part export in a sub-folder is one delivery: its parts add up.
        part = r.folder / "aws-2026-11"
        rows = [
            {
                **supabase_invoice(NOV, 0)[1],
                "ServiceProviderName": "AWS",
                "BilledCost": "10",
                "EffectiveCost": "10",
            }
        ]
        write_focus_csv(part / "part-0.csv", rows)
        write_focus_csv(part / "part-1.csv", rows)
        assert await r.job.refresh()
        # Spread over November's 30 days; month to date = 26 of them... and the projection has all.
        assert r.job.figures.current.projection["aws"] == Decimal(20)
        # A broken gzip counts as a rejected file; the rest still count.
        (r.folder / "broken.csv.gz").write_bytes(gzip.compress(b"BilledCost\n1\n")[:-6])
        assert await r.job.refresh()
        assert r.value("billing_rows_rejected_total", source="supabase", reason="bad_json") == 1
        assert r.job.figures.previous.billed("supabase") == oct_total + 5


async def test_folder_currency_mismatch_is_rejected_not_converted(tmp_path: Path) -> None:
    async with rig(tmp_path, invoices=False) as r:
        rows = supabase_invoice(NOV, 0)
        rows[0] = {**rows[0], "BillingCurrency": "EUR"}
        write_focus_csv(r.folder / "inv.csv", rows)
        assert await r.job.refresh()
        assert (
            r.value("billing_rows_rejected_total", source="supabase", reason="currency_mismatch")
            == 1
        )
        want = sum((Decimal(x["BilledCost"]) for x in rows[1:]), Decimal(0))
        assert r.job.figures.current.projection["supabase"] == want


async def test_a_day_later_the_window_moves_and_old_days_keep_their_exact_figures(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, invoices=False) as r:
        assert await r.job.refresh()
        before = r.job.figures.current.billed("vercel")
        r.clock.t += 86400  # 27 November: the window now overlaps yesterday's by all but a day
        assert await r.job.refresh()
        after = r.job.figures.current
        assert after.billed("vercel") == before + expected_vercel(
            r.state.data, date(2026, 11, 27), date(2026, 11, 27)
        )
        windows = [q for p, q in r.state.requests if p == "/v1/billing/charges"]
        assert [w["to"] for w in windows] == [
            "2026-11-27T00:00:00.000Z",
            "2026-11-28T00:00:00.000Z",
        ]


async def test_folder_reads_jsonl_and_gzip_exports(tmp_path: Path) -> None:
    async with rig(tmp_path, invoices=False) as r:
        rows = supabase_invoice(NOV, 0)
        lines = "\n".join(json.dumps({**x, "Tags": json.loads(x["Tags"])}) for x in rows) + "\n"
        (r.folder / "a.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
        write_focus_csv(
            r.folder / "gcp" / "part-0.csv", [{**rows[1], "ServiceProviderName": "Google Cloud"}]
        )
        (r.folder / "notes.txt").write_text("not a FOCUS file: ignored")
        assert await r.job.refresh()
        snap = r.job.figures.current
        assert snap.projection["supabase"] == sum(
            (Decimal(x["BilledCost"]) for x in rows), Decimal(0)
        )
        assert snap.projection["google_cloud"] == Decimal(rows[1]["BilledCost"])
        assert r.value("billing_rows_total", source="supabase") == len(rows) + 1
