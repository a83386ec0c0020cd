"""Which series exist: everything the exporters, the recorder and the recording rules produce.

Rules and dashboards may only read series from this set (plus Prometheus's own), so a renamed
metric breaks a test instead of an alert or a panel.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from tests.conftest import ROOT
from tests.golden import golden_sample_names

# Series that come from Prometheus itself rather than from an exporter or a recording rule.
EXTERNAL = {"up", "ALERTS", "ALERTS_FOR_STATE"}
GENERATED = ROOT / "alert_rules" / "generated"


_STRIP = [
    r"#[^\n]*",  # comments
    r'"[^"]*"',  # strings
    r"\{[^}]*\}",  # matchers
    r"\[[^\]]*\]",  # ranges
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",  # label lists
]
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
}


def metric_names(expr: str) -> set[str]:
    for pattern in _STRIP:
        expr = re.sub(pattern, " ", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_][a-zA-Z0-9_:]*)\b(?!\s*\()", expr):
        if m.group(1) not in _KEYWORDS:
            names.add(m.group(1))
    return names


def _recorder_metric_names() -> set[str]:
    from datetime import UTC, datetime

    from recorder.app import Metrics, StateCollector
    from schema.rows import LatestDeployment

    class Store:
        def __init__(self) -> None:
            self.latest = {
                "production": LatestDeployment("production", datetime.now(UTC), "abc", "main")
            }
            self.pool = None

    import tempfile

    from recorder.applier import Applier
    from recorder.journal import Journal

    registry = CollectorRegistry(auto_describe=False)
    metrics = Metrics(registry)
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp), 1 << 20)
        journal.open()
        applier = Applier(journal, Store(), lambda r: None)  # type: ignore[arg-type, return-value]
        registry.register(
            StateCollector(Store(), metrics, lambda: True, journal=journal, applier=applier)  # type: ignore[arg-type]
        )
        return {sample.name for fam in registry.collect() for sample in fam.samples}


def _api_metric_names() -> set[str]:
    """The operator API's series the rules read (api_maintenance_window_active)."""
    from api.maintenance import ActiveGauge

    gauge = ActiveGauge(("vercel",))
    gauge.active = frozenset()
    return {sample.name for fam in gauge.collect() for sample in fam.samples}


def recorded_names() -> set[str]:
    out = set()
    for path in sorted(GENERATED.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            out |= {r["record"] for r in group["rules"] if "record" in r}
    return out


@cache
def produced() -> frozenset[str]:
    return frozenset(
        golden_sample_names()
        | _recorder_metric_names()
        | _api_metric_names()
        | recorded_names()
        | EXTERNAL
    )
