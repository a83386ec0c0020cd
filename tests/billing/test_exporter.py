"""The exporter as Prometheus sees it, its config errors, and cost_tracking in PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import yaml

from exporters.billing import metrics
from exporters.billing.app import make_app
from tests.billing.helpers import OPENAI_KEY, VERCEL_TOKEN, rig, samples
from tests.conftest import ROOT
from tests.golden import golden_sample_names


@pytest.mark.integration
async def test_output_passes_promtool_and_names_are_exactly_the_documented_ones(
    tmp_path: Path, promtool: str, pg_dsn: str
) -> None:
    async with rig(tmp_path, cost_tracking={"conninfo": pg_dsn}) as r:
        await r.job.refresh()  # cost_tracking fails (not migrated): its error metric shows
        text = r.text()
    res = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    names = {name for name, _ in samples(text)}
    every = golden_sample_names("billing")
    assert names <= every
    missing = every - names - {"billing_cost_tracking_last_success_timestamp_seconds"}
    assert not missing, missing
    assert (
        samples(text)[("billing_cost_tracking_errors_total", frozenset({("reason", "schema")}))]
        == 1
    )


async def test_before_the_first_refresh_it_serves_only_health(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        text = r.text()
        assert "billing_up 0.0" in text
        assert "billing_month_to_date_billed_cost_usd" not in text


async def test_the_app_serves_the_background_jobs_first_round(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    parked = asyncio.Event()

    async def park(_: float) -> None:  # after the first round, every source waits for ever
        parked.set()
        await asyncio.Event().wait()

    async with (
        rig(tmp_path, sleep=park) as r,
        TestClient(TestServer(make_app(r.exporter))) as client,
    ):
        await asyncio.wait_for(parked.wait(), 30)
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
        assert (await client.get("/-/ready")).status == 200
        assert (await client.get("/-/healthy")).status == 200
        page = await (await client.get("/")).text()
    got = samples(text)
    assert got[("billing_up", frozenset())] == 1
    assert {n for n, _ in got} <= golden_sample_names("billing")
    assert "billing_scrape_duration_seconds" in {n for n, _ in got}
    for source in ("vercel", "openai", "supabase"):
        assert got[("billing_source_up", frozenset({("source", source)}))] == 1
        assert source in page
    assert got[("billing_source_requests_total", frozenset({("source", "vercel")}))] == 1
    assert sum(v for (n, _), v in got.items() if n == "billing_month_to_date_billed_cost_usd") > 0


async def test_a_failing_source_is_retried_alone_at_1_2_4_minutes(tmp_path: Path) -> None:
    slept: list[float] = []
    enough = asyncio.Event()

    async with rig(tmp_path) as r:

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            if seconds >= r.job.cfg.refresh_interval:  # a regular refresh: wait no further
                if len(slept) >= 9:
                    enough.set()
                await asyncio.Event().wait()
            r.clock.t += seconds

        r.job.sleep = sleep
        r.state.vercel_token = "rotated"  # Vercel refuses us from now on; the others are fine
        task = asyncio.create_task(r.job.run())
        await asyncio.wait_for(enough.wait(), 30)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # First round: Vercel 1 min, the others an hour; then Vercel alone doubles up to the hour.
        assert slept[:3] == [60, 3600, 3600]
        assert slept[3:] == [120, 240, 480, 960, 1920, 3600]
        assert r.value("billing_source_errors_total", source="vercel", reason="auth") == 7
        assert len([p for p, _ in r.state.requests if p == "/v1/organization/costs"]) == 1
        assert r.value("billing_source_up", source="openai") == 1
        assert r.value("billing_up") == 0
        assert r.job.figures is not None  # published after the first round


async def test_a_snapshot_does_not_change_when_the_job_moves_on(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    def render(snap: object) -> bytes:
        class One:
            def collect(self) -> object:
                return metrics.collect(snap)  # type: ignore[arg-type]

        reg = CollectorRegistry(auto_describe=False)
        reg.register(One())  # type: ignore[arg-type]
        return generate_latest(reg)

    async with rig(tmp_path) as r:
        assert await r.job.refresh()
        snap = r.job.snapshot()
        before = render(snap)
        r.clock.t += 86400
        r.state.vercel_token = "rotated"
        assert not await r.job.refresh()
        assert render(snap) == before
        assert render(r.job.snapshot()) != before


async def test_no_secret_in_metrics_or_logs_even_on_auth_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with rig(tmp_path) as r:
        r.state.vercel_token = "rotated"  # our token is now refused
        r.state.openai_key = "rotated"
        assert not await r.job.refresh()
        assert r.value("billing_source_errors_total", source="vercel", reason="auth") == 1
        assert r.value("billing_source_errors_total", source="openai", reason="auth") == 1
        text = r.text()
    for secret in (VERCEL_TOKEN, OPENAI_KEY):
        assert secret not in text
        assert secret not in caplog.text
    details = [str(getattr(rec, "detail", "")) for rec in caplog.records]
    assert "charges: HTTP 403 (forbidden)" in details  # the vendor's code, never its message
    assert "costs: HTTP 401 (invalid_api_key)" in details
    for rec in caplog.records:
        for secret in (VERCEL_TOKEN, OPENAI_KEY):
            assert secret not in str(rec.__dict__)


@pytest.mark.integration
async def test_cost_tracking_is_upserted_and_restated_categories_disappear(
    tmp_path: Path, migrated_dsn: str
) -> None:
    def rows() -> dict[tuple[str, str, date], tuple[Decimal, Decimal | None, str]]:
        with psycopg.connect(migrated_dsn) as c:
            cur = c.execute(
                "SELECT service_provider, service_category, billing_period_start, billing_period_end,"
                " cost_usd, projected_monthly_cost, cost_notes FROM cost_tracking"
            )
            out = {}
            for prov, cat, start, end, cost, proj, notes in cur.fetchall():
                assert end == (
                    date(2026, 12, 1) if start == date(2026, 11, 1) else date(2026, 11, 1)
                )
                out[(prov, cat, start)] = (cost, proj, notes)
            return out

    async with rig(
        tmp_path, cost_tracking={"conninfo": migrated_dsn, "tiers": {"vercel": "pro"}}
    ) as r:
        assert await r.job.refresh()
        first = rows()
        snap = r.job.figures
        for month in (snap.current, snap.previous):
            got = sum((c for (_, _, s), (c, _, _) in first.items() if s == month.start), Decimal(0))
            assert got == month.billed()  # every cent of the month is in the table
        cost, proj, notes = first[("supabase", "compute", date(2026, 10, 1))]
        assert notes.startswith("usage 15.00; credit -10.00")  # credits kept apart in the notes
        assert proj == cost  # a closed month's projection is its cost
        assert first[("vercel", "networking", date(2026, 11, 1))][1] is not None
        # The same refresh again: the same rows (upserted, not duplicated).
        assert await r.job.refresh()
        assert rows() == first
        # Supabase's October invoice restated without its credit: that row goes away.
        (r.folder / "supabase-2026-10.csv").write_text(
            "\n".join(
                line
                for line in (r.folder / "supabase-2026-10.csv").read_text().splitlines()
                if "Credit" not in line
            )
            + "\n"
        )
        assert await r.job.refresh()
        after = rows()
        assert after[("supabase", "compute", date(2026, 10, 1))][0] == cost + 10
        assert r.value("billing_cost_tracking_errors_total", reason="unavailable") == 0
        assert r.value("billing_cost_tracking_last_success_timestamp_seconds") is not None
        with psycopg.connect(migrated_dsn) as c:
            tiers = dict(
                c.execute(
                    "SELECT DISTINCT service_provider, usage_tier FROM cost_tracking"
                ).fetchall()
            )
        assert tiers == {"vercel": "pro", "openai": None, "supabase": None}


async def test_cost_tracking_database_down_is_a_metric_not_a_crash(tmp_path: Path) -> None:
    from compose.processes import free_port

    dead = f"host=127.0.0.1 port={free_port()} user=postgres dbname=x"
    async with rig(tmp_path, cost_tracking={"conninfo": dead}) as r:
        assert await r.job.refresh()  # the sources are fine
        assert r.value("billing_cost_tracking_errors_total", reason="unavailable") == 1
        assert r.value("billing_up") == 1


@pytest.mark.integration
async def test_cost_tracking_reads_its_password_file_at_each_write(
    tmp_path: Path, migrated_dsn: str
) -> None:
    pw = tmp_path / "db_password"
    pw.write_text("not-needed-with-trust-auth\n")
    ct = {"conninfo": migrated_dsn, "password_file": str(pw), "statement_timeout": "5s"}
    async with rig(tmp_path, invoices=False, cost_tracking=ct) as r:
        assert await r.job.refresh()
        assert r.value("billing_cost_tracking_errors_total", reason="unavailable") == 0
        pw.unlink()  # rotated away: the next write fails (counted), the exporter carries on
        assert await r.job.refresh()
        assert r.value("billing_cost_tracking_errors_total", reason="unavailable") == 1
        pw.write_text("rotated\n")
        assert await r.job.refresh()
        assert r.value("billing_cost_tracking_errors_total", reason="unavailable") == 1
        assert r.value("billing_up") == 1


def test_bad_config_exits_2_listing_every_key(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(
        yaml.safe_dump(
            {
                "currency": "EUR",
                "monthly_budget_usd": -5,
                "vercel": {"token_file": str(tmp_path / "t"), "base_url": "ftp://x"},
                "folders": [{"name": "Bad Name", "path": "/tmp"}],
                "cost_tracking": {"conninfo": "host=x password=hunter2"},
                "surprise": 1,
            }
        )
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporters.billing",
            "--config.file",
            str(tmp_path / "b.yaml"),
            "--check-config",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert res.returncode == 2
    for key in (
        "currency",
        "monthly_budget_usd",
        "vercel.base_url",
        "folders[0].name",
        "cost_tracking.conninfo",
        "surprise",
    ):
        assert f"b.yaml: {key}:" in res.stderr, key
    assert "hunter2" not in res.stderr


def test_missing_secret_files_exit_2_naming_the_config_each_key_and_file(tmp_path: Path) -> None:
    (tmp_path / "vercel_token").write_text(f"{VERCEL_TOKEN}\n")
    path = tmp_path / "b.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "vercel": {"token_file": str(tmp_path / "vercel_token")},
                "openai": {"token_file": str(tmp_path / "openai_key")},
                "cost_tracking": {"conninfo": "host=x", "password_file": str(tmp_path / "pw")},
            }
        )
    )
    for args in ([], ["report"]):
        res = subprocess.run(
            [sys.executable, "-m", "exporters.billing", *args, "--config.file", str(path)]
            + ([] if args else ["--check-config"]),
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        assert res.returncode == 2, res.stderr
        assert res.stderr == (
            f"invalid config {path}:\n"
            f"  {path}: openai.token_file: cannot read secret file {tmp_path}/openai_key: "
            "No such file or directory\n"
            f"  {path}: cost_tracking.password_file: cannot read secret file {tmp_path}/pw: "
            "No such file or directory\n"
        )
        assert VERCEL_TOKEN not in res.stderr


def test_report_command_prints_json_and_fails_cleanly(tmp_path: Path) -> None:
    from fakes.billing_api import write_supabase_invoices

    write_supabase_invoices(tmp_path / "inv", date(2026, 9, 1), date(2026, 11, 26))
    (tmp_path / "b.yaml").write_text(
        yaml.safe_dump({"folders": [{"name": "supabase", "path": str(tmp_path / "inv")}]})
    )
    cmd = [
        sys.executable,
        "-m",
        "exporters.billing",
        "report",
        "--config.file",
        str(tmp_path / "b.yaml"),
    ]
    res = subprocess.run(
        [*cmd, "--month", "2026-10", "--format", "json", "--active-users", "50"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    import json

    doc = json.loads(res.stdout)
    from fakes.billing_api import supabase_invoice

    want = sum(
        (Decimal(x["BilledCost"]) for x in supabase_invoice(date(2026, 10, 1), 1)), Decimal(0)
    )
    assert doc["current_month"]["total_cost_usd"] == str(want.quantize(Decimal("0.01")))
    assert doc["trends"]["efficiency_metrics"]["cost_per_active_user"] == str(
        (want / 50).quantize(Decimal("0.01"))
    )
    res = subprocess.run(
        [*cmd, "--month", "2026-13"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert res.returncode == 2
    assert "is not YYYY-MM" in res.stderr


def test_the_example_config_is_valid() -> None:
    from common.config import load_config
    from exporters.billing.config import BillingConfig

    cfg = load_config(ROOT / "config" / "example" / "billing.yaml", BillingConfig)
    assert [s.name for s in cfg.sources()] == ["vercel", "openai", "supabase"]
    assert cfg.folders[0].max_data_age == 40 * 86400
