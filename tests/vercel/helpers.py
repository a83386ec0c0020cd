"""Shared set-up for the Vercel exporter tests: the fake's config writer, and sample readers."""

from __future__ import annotations

import time
from pathlib import Path

from common import exporter as shared
from common.config import load_config
from exporters.vercel.app import VercelExporter
from exporters.vercel.config import VercelConfig, read_secrets
from fakes.vercel_setup import PROJECT_ID, SECRETS, TOKEN, SimClock, write_config

__all__ = [
    "PROJECT_ID",
    "SECRETS",
    "TOKEN",
    "SimClock",
    "load",
    "render",
    "samples",
    "value",
    "write_config",
]


def load(path: Path) -> tuple[VercelConfig, dict[str, str]]:
    cfg = load_config(path, VercelConfig)
    return cfg, read_secrets(cfg, path)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def render(e: VercelExporter) -> bytes:
    """One scrape's exposition now, as GET /metrics serves it (called on the event loop, or
    where none runs)."""
    return shared.render(e, e.take_snapshot(), [], time.perf_counter())
