"""The rule build: generated files current, conventions enforced, every alert tested both ways."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from alert_rules.build import GENERATED, TEMPLATES
from alert_rules.build import main as build_main
from alert_rules.config import CONFIG, load_rules
from alert_rules.render import REQUIRED_ANNOTATIONS, Rendered, RuleError, render_all, validate
from common.config import ConfigError
from tests.conftest import ROOT
from tests.metrics_produced import metric_names, produced

RULE_TESTS = sorted((ROOT / "tests" / "rules").glob("*.test.yaml"))


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


def test_a_missing_config_key_is_refused_before_rendering(tmp_path: Path) -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    del cfg["uptime"]["response_time"]["warning_seconds"]
    bad = tmp_path / "config.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(
        ConfigError, match=r"uptime\.response_time\.warning_seconds: Field required"
    ):
        load_rules(bad)


def test_a_template_reading_a_key_the_model_lacks_is_a_render_error(tmp_path: Path) -> None:
    (tmp_path / "x.yaml.j2").write_text("groups: [[ cfg.uptime.response_time.warning_secs ]]\n")
    with pytest.raises(RuleError, match="warning_secs"):
        render_all(tmp_path, load_rules())


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


CFG = "https://runbooks.example"  # the runbook base URL the validator holds links to


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


# Every scrape job in config.yaml's selectors, with the names its health alerts keep (dashboards,
# runbooks and routing tests use them). One macro renders both: templates/_exporter_health.j2.
EXPORTER_HEALTH = {
    "uptime": ("UptimeExporterDown", "UptimeExporterAbsent"),
    "recorder": ("RecorderDown", "RecorderAbsent"),
    "vercel": ("VercelExporterDown", "VercelExporterAbsent"),
    "supabase": ("SupabaseExporterDown", "SupabaseExporterAbsent"),
    "billing": ("BillingExporterDown", "BillingExporterAbsent"),
    "api": ("OperatorApiDown", "OperatorApiAbsent"),
    "backups": ("BackupWorkerDown", "BackupWorkerAbsent"),
}


def test_every_exporter_has_a_down_and_an_absent_alert_with_one_for_and_one_severity() -> None:
    cfg: dict[str, Any] = load_rules().template_values()
    assert set(EXPORTER_HEALTH) == set(cfg["selectors"]), "a new scrape job needs its health alerts"
    alerts = {r["alert"]: r for r in generated_rules() if "alert" in r}
    holds = set()
    for key, (down, absent) in EXPORTER_HEALTH.items():
        sel = cfg["selectors"][key]
        assert alerts[down]["expr"] == f"up{{{sel}}} == 0", down
        expr = alerts[absent]["expr"]
        assert expr.startswith(f"absent(up{{{sel}}})"), absent
        # An optional exporter (run only where configured) is absent only once it was scraped.
        optional = key in cfg["exporters"]["optional"]
        assert (f"present_over_time(up{{{sel}}}" in expr) == optional, absent
        for name in (down, absent):
            holds.add((alerts[name]["for"], alerts[name]["labels"]["severity"]))
    assert holds == {(cfg["exporters"]["down_for"], "critical")}, holds


def test_no_alert_hand_writes_an_exporter_health_check() -> None:
    """Alerting on scrape health is the macro's alone: a second hand-written copy drifts.

    Other alerts may still read `up` (VercelDrainSilent leaves a down exporter to its own alert).
    """
    health = {name for pair in EXPORTER_HEALTH.values() for name in pair}
    check = re.compile(r"^\s*up\{[^}]*\}\s*==\s*0\s*$|\babsent\s*\(\s*up\b")
    copies = [
        r["alert"]
        for r in generated_rules()
        if "alert" in r and r["alert"] not in health and check.search(str(r["expr"]))
    ]
    assert not copies, copies


def test_every_metric_a_rule_reads_is_produced() -> None:
    rules = generated_rules()
    known = produced()
    unknown = {}
    for rule in rules:
        # The expression, and the PromQL that annotations run through `query` (in backticks).
        exprs = [str(rule["expr"])]
        for text in (rule.get("annotations") or {}).values():
            exprs += re.findall(r"query\s+`([^`]*)`", str(text))
        for expr in exprs:
            for name in metric_names(expr) - known:
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
    assert render_all(TEMPLATES, load_rules())


def test_the_traffic_ladder_test_file_is_current() -> None:
    from tests.rules import ladder

    assert ladder.OUT.read_text() == ladder.render(), "run `python -m tests.rules.ladder`"
