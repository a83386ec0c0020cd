"""Shared by the Supabase exporter tests: one /metrics body without HTTP, and sample readers."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from common import exporter as shared
from exporters.supabase.app import SupabaseExporter

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape_text(exporter: SupabaseExporter) -> str:
    """What GET /metrics serves (common.exporter's handler and the app's per-database up),
    without starting the app: its background loops stay off, the test drives them."""
    started = time.perf_counter()
    snapshot = await exporter.snapshot()
    loops = [
        fam
        for prefix, (loop, what) in exporter.loops().items()
        for fam in loop.metrics(prefix, what)
    ]
    return shared.render(exporter, snapshot, loops, started).decode()


def samples(text: str) -> Samples:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out
