"""The rule build: generated files current, conventions enforced, every alert tested both ways."""

from __future__ import annotations

import asyncio
import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from alert_rules.build import CONFIG, GENERATED, TEMPLATES, load_config
from alert_rules.build import main as build_main
from alert_rules.render import REQUIRED_ANNOTATIONS, Rendered, RuleError, render_all, validate
from exporters.uptime.collector import ExporterMeta, UptimeCollector
from exporters.uptime.config import UptimeConfig
from exporters.uptime.probe import PHASES, ProbeResult
from exporters.uptime.scheduler import ProberStats, TargetState, plan
from tests.conftest import ROOT

RULE_TESTS = sorted((ROOT / "tests" / "rules").glob("*.test.yaml"))
# Series that come from Prometheus itself rather than from an exporter or a recording rule.
EXTERNAL = {"up", "ALERTS", "ALERTS_FOR_STATE"}


def generated_rules() -> list[dict[str, Any]]:
    rules = []
    for path in sorted(GENERATED.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += group["rules"]
    return rules


def test_generated_rules_are_current() -> None:
    assert build_main(["build", "--check"]) == 0, "run `python -m alert_rules build` and commit"


def test_check_mode_detects_a_stale_file(tmp_path: Path) -> None:
    assert build_main(["build", "--out", str(tmp_path)]) == 0
    victim = sorted(tmp_path.glob("*.yml"))[0]
    victim.write_text(victim.read_text() + "# hand edit\n")
    assert build_main(["build", "--check", "--out", str(tmp_path)]) == 1


def test_a_missing_config_key_is_a_render_error(tmp_path: Path) -> None:
    cfg = load_config()
    del cfg["uptime"]["response_time"]["warning_seconds"]  # type: ignore[index]
    bad = tmp_path / "config.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(RuleError, match="warning_seconds"):
        render_all(TEMPLATES, load_config(bad))


def _one_alert(**changes: Any) -> list[Rendered]:
    rule: dict[str, Any] = {
        "alert": "ThingBroken",
        "expr": "thing_up == 0",
        "for": "1m",
        "labels": {"severity": "warning", "service": "thing"},
        "annotations": {
            "summary": "Thing is broken.",
            "description": "value {{ $value }}",
            "remediation": "Fix it.",
            "runbook_url": "https://runbooks.example/ThingBroken.md#thingbroken",
            "value": "{{ $value }}",
        },
    }
    for key, value in changes.items():
        if value is None:
            rule.pop(key, None)
        else:
            rule[key] = value
    doc = {"groups": [{"name": "g", "rules": [rule]}]}
    return [Rendered("x.yml", "", doc)]


CFG = {"runbook_base_url": "https://runbooks.example"}


def test_a_well_formed_alert_passes() -> None:
    validate(_one_alert(), CFG)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": {"severity": "page", "service": "x"}}, "labels.severity must be one of"),
        ({"labels": {"severity": "warning"}}, "needs a 'service' label"),
        ({"for": None}, "missing 'for'"),
        ({"alert": "thing_broken"}, "PascalCase"),
        (
            {
                "annotations": {
                    "summary": "s",
                    "description": "{{ $value }}",
                    "runbook_url": "https://runbooks.example/x",
                }
            },
            "missing annotation 'remediation'",
        ),
        (
            {
                "annotations": {
                    "summary": "s",
                    "description": "no value",
                    "remediation": "r",
                    "runbook_url": "https://runbooks.example/x",
                }
            },
            "live value",
        ),
        (
            {
                "annotations": {
                    "summary": "{{ $labels.x }}",
                    "description": "{{ $value }}",
                    "remediation": "r",
                    "runbook_url": "https://runbooks.example/x",
                }
            },
            "summary must be static",
        ),
        (
            {
                "annotations": {
                    "summary": "s",
                    "description": "{{ $value }}",
                    "remediation": "r",
                    "runbook_url": "https://elsewhere.example/x",
                }
            },
            "runbook_url must point into",
        ),
    ],
)
def test_validators_reject(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError, match=re.escape(message)):
        validate(_one_alert(**changes), CFG)


def test_recording_rule_naming_and_aggregation() -> None:
    def doc(record: str, expr: str) -> list[Rendered]:
        return [
            Rendered(
                "r.yml",
                "",
                {"groups": [{"name": "r", "rules": [{"record": record, "expr": expr}]}]},
            )
        ]

    validate(doc("job:x:sum", "sum by (job) (x)"), CFG)
    with pytest.raises(RuleError, match="level:metric:operations"):
        validate(doc("job_x_sum", "sum by (job) (x)"), CFG)
    with pytest.raises(RuleError, match="without by/without"):
        validate(doc("job:x:sum", "sum(x)"), CFG)


def test_duplicate_group_names_are_rejected() -> None:
    files = [*_one_alert(), copy.deepcopy(_one_alert()[0])]
    with pytest.raises(RuleError, match="also in"):
        validate(files, CFG)


def _promtool_cases() -> tuple[set[tuple[str, str]], set[str]]:
    """(alertname, severity) pairs with a full firing case, and alertnames with a silent case."""
    firing: set[tuple[str, str]] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            assert test.get("name"), f"{path}: every test group needs a name saying what it shows"
            for case in test.get("alert_rule_test") or []:
                if not case.get("exp_alerts"):
                    silent.add(case["alertname"])
                for exp in case.get("exp_alerts") or []:
                    ann = exp.get("exp_annotations") or {}
                    if all(ann.get(k) for k in REQUIRED_ANNOTATIONS):
                        firing.add((case["alertname"], exp["exp_labels"]["severity"]))
    return firing, silent


def test_every_alert_has_a_firing_and_a_silent_promtool_case() -> None:
    firing, silent = _promtool_cases()
    missing = []
    for rule in generated_rules():
        if "alert" not in rule:
            continue
        name, sev = rule["alert"], rule["labels"]["severity"]
        if (name, sev) not in firing:
            missing.append(f"{name} ({sev}): no firing case with full labels and annotations")
        if name not in silent and name != "Watchdog":  # Watchdog has no silent state by design
            missing.append(f"{name}: no case where it must stay silent")
    assert not missing, "\n".join(missing)


def _exporter_metric_names() -> set[str]:
    conf = UptimeConfig.model_validate(
        {
            "targets": [
                {"name": "a", "http": {"url": "https://x.example/"}},
                {"name": "b", "tcp": {"address": "x:1"}},
            ]
        }
    )
    states = {t.name: TargetState(t) for t in plan(conf)}
    full = ProbeResult(
        success=False,
        reason="status",
        status_code=500,
        phases=dict.fromkeys(PHASES, 0.1),
        tls_not_after=1e9,
        security_headers=dict.fromkeys(
            (
                "strict_transport_security",
                "content_security_policy",
                "x_content_type_options",
                "frame_options",
            ),
            True,
        ),
        hsts_max_age=1.0,
        finished_at=1e9,
    )
    for s in states.values():
        s.last = full
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        UptimeCollector(states, ProberStats(), ExporterMeta("v", "r", 1, 1, True), 1.0, now=1e9)
    )
    return {sample.name for fam in registry.collect() for sample in fam.samples}


_STRIP = [
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
    from recorder.store import LatestDeployment

    class Store:
        def __init__(self) -> None:
            self.latest = {
                "production": LatestDeployment("production", datetime.now(UTC), "abc", "main")
            }
            self.pool = None

    registry = CollectorRegistry(auto_describe=False)
    metrics = Metrics(registry)
    registry.register(StateCollector(Store(), metrics, lambda: True))  # type: ignore[arg-type]
    return {sample.name for fam in registry.collect() for sample in fam.samples}


def _vercel_metric_names() -> set[str]:
    """Everything the Vercel exporter serves once each drain and the poller have had data."""
    import tempfile

    from exporters.vercel.api import VercelApi
    from exporters.vercel.app import Exporter
    from exporters.vercel.app import render as render_vercel
    from exporters.vercel.trace_drain import resources_from_json
    from tests.fakes.vercel_drains import log_records, otlp_json, speed_insights_records
    from tests.vercel.helpers import PROJECT_ID, SimClock, load, samples, write_config

    with tempfile.TemporaryDirectory() as tmp:
        cfg, secrets = load(write_config(Path(tmp)))
        clock = SimClock()
        # Never called: the poller's state is set below, as a refresh would.
        api = VercelApi(
            "http://127.0.0.1:9", "unused", team_id=None, timeout=1.0, max_requests_per_minute=1
        )
        e = Exporter(cfg, secrets, api=api, clock=clock)
        d = e.drains
        d.logs.apply(d.logs.aggregate(log_records(50, PROJECT_ID), 1.0))
        d.speed_insights.apply(
            d.speed_insights.aggregate(speed_insights_records(50, PROJECT_ID), 1.0)
        )
        d.traces.apply(d.traces.aggregate(resources_from_json(otlp_json(10, PROJECT_ID)), 1.0))
        for ep in d.endpoints.values():
            ep.last_received = clock()
        assert e.tracker is not None
        ms = int(clock() * 1000)
        raw = {
            "dpl_1": {
                "uid": "dpl_1",
                "createdAt": ms - 100_000,
                "buildingAt": ms - 90_000,
                "ready": ms - 10_000,
                "readyState": "READY",
                "target": "production",
                "meta": {"githubCommitSha": "abc", "githubCommitRef": "main"},
            }
        }
        ps = e.tracker.projects[PROJECT_ID]
        ps.loaded = True  # counts what it sees, as after the first load
        e.tracker._apply(ps, raw, 0, clock())
        e.tracker.refresh_seconds = 0.1
        text = render_vercel(e).decode()
        asyncio.run(api.aclose())
    return {name for (name, _) in samples(text)}


def test_every_metric_a_rule_reads_is_produced() -> None:
    rules = generated_rules()
    produced = (
        _exporter_metric_names()
        | _recorder_metric_names()
        | _vercel_metric_names()
        | {r["record"] for r in rules if "record" in r}
        | EXTERNAL
    )
    unknown = {}
    for rule in rules:
        # The expression, and the PromQL that annotations run through `query` (in backticks).
        exprs = [str(rule["expr"])]
        for text in (rule.get("annotations") or {}).values():
            exprs += re.findall(r"query\s+`([^`]*)`", str(text))
        for expr in exprs:
            for name in metric_names(expr) - produced:
                unknown.setdefault(name, rule.get("alert") or rule.get("record"))
    assert not unknown, f"rules read series nothing produces: {unknown}"


def test_metric_name_extraction_sees_through_promql() -> None:
    assert metric_names(
        'sum without (instance) (rate(a_total{job="x"}[5m])) / (b:c:d > 0) unless on (t) e'
    ) == {
        "a_total",
        "b:c:d",
        "e",
    }


def test_config_file_is_the_one_used() -> None:
    assert CONFIG.exists()
    assert render_all(TEMPLATES, load_config())
