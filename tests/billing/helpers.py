"""A billing rig: the strict fake Vercel and OpenAI billing APIs, a folder of Supabase FOCUS
invoices, and the exporter on a simulated clock (2026-11-26 12:00 UTC unless told otherwise)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from common import exporter as shared
from exporters.billing.app import BillingExporter
from exporters.billing.config import BillingConfig
from exporters.billing.job import BillingJob
from fakes.billing_api import (
    BillingApiState,
    BillingData,
    make_openai_app,
    make_vercel_app,
    write_supabase_invoices,
)
from fakes.vercel_setup import SimClock

VERCEL_TOKEN = "vercel_SECRET_billing_token_123"
OPENAI_KEY = "sk-admin-SECRET-openai-key-456"
TEAM = "team_demo"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class Rig:
    def __init__(
        self, state: BillingApiState, exporter: BillingExporter, clock: SimClock, folder: Path
    ) -> None:
        self.state, self.exporter, self.clock, self.folder = state, exporter, clock, folder

    @property
    def job(self) -> BillingJob:
        return self.exporter.job

    def source(self, name: str) -> Any:
        return self.job.sources[name]

    def text(self) -> str:
        """What /metrics would serve now (the shared app's render of a fresh snapshot)."""
        e = self.exporter
        return shared.render(e, e.job.snapshot(), [], time.perf_counter()).decode()

    def value(self, metric: str, **labels: str) -> float | None:
        return samples(self.text()).get((metric, frozenset(labels.items())))

    def sum(self, metric: str, **labels: str) -> float:
        return sum(
            v
            for (name, lbl), v in samples(self.text()).items()
            if name == metric and all((k, x) in lbl for k, x in labels.items())
        )


def write_config(tmp: Path, vercel_url: str, openai_url: str, **extra: Any) -> Path:
    import yaml

    (tmp / "vercel_token").write_text(VERCEL_TOKEN + "\n")
    (tmp / "openai_key").write_text(OPENAI_KEY + "\n")
    (tmp / "invoices").mkdir(exist_ok=True)
    doc: dict[str, Any] = {
        "vercel": {
            "base_url": vercel_url,
            "token_file": str(tmp / "vercel_token"),
            "team_id": TEAM,
        },
        "openai": {"base_url": openai_url, "token_file": str(tmp / "openai_key")},
        "folders": [{"name": "supabase", "path": str(tmp / "invoices")}],
        **extra,
    }
    path = tmp / "billing.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@asynccontextmanager
async def rig(
    tmp: Path,
    *,
    now: datetime = NOW,
    data: BillingData | None = None,
    invoices: bool = True,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
    **extra: Any,
) -> AsyncIterator[Rig]:
    from common.config import load_config

    clock = SimClock(now.timestamp())
    data = data or BillingData(start=date(2026, 8, 1))
    if data.last_day is None:
        data.last_day = lambda: datetime.fromtimestamp(clock(), UTC).date()
    state = BillingApiState(data, vercel_token=VERCEL_TOKEN, openai_key=OPENAI_KEY, team_id=TEAM)
    vercel = TestServer(make_vercel_app(state))
    openai = TestServer(make_openai_app(state))
    await vercel.start_server()
    await openai.start_server()
    path = write_config(
        tmp, str(vercel.make_url("")).rstrip("/"), str(openai.make_url("")).rstrip("/"), **extra
    )
    if invoices:
        write_supabase_invoices(tmp / "invoices", data.start, now.date())
    cfg = load_config(path, BillingConfig)
    exporter = BillingExporter(cfg, clock=clock, sleep=sleep or clock.sleep)
    try:
        yield Rig(state, exporter, clock, tmp / "invoices")
    finally:
        await exporter.aclose()
        await vercel.close()
        await openai.close()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out
