"""The rules' knobs are typed (issue 11): alert_rules/config.yaml loads into one strict model, a
bad key fails the build with exit 2 naming it, and the rules, the dashboards and Prometheus's
config all take their values from that model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from alert_rules.build import main as build_main
from alert_rules.config import CONFIG, AlertRulesConfig, Job, Selectors, load_rules, prom_duration
from common.config import ConfigError
from common.durations import parse_duration
from compose.build import OUT as PROMETHEUS_YML
from compose.build import render as render_prometheus
from tests.conftest import ROOT


def copy_with(tmp_path: Path, old: str, new: str) -> Path:
    """config.yaml with one line changed (comments and layout kept), in tmp_path."""
    text = CONFIG.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path = tmp_path / "config.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def changed_in(path: Path, key: str, value: Any) -> Path:
    """`path` with the dotted `key` (list items by index: slo.page.0.short) set to `value`;
    re-dumped, so comments are dropped."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    *parents, last = key.split(".")
    node = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def changed(tmp_path: Path, key: str, value: Any) -> Path:
    """A copy of config.yaml in tmp_path with the dotted `key` set to `value`."""
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    return changed_in(path, key, value)


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert info.value.path == path
    return info.value.problems


def _same(a: Any, b: Any, where: str = "") -> None:
    assert type(a) is type(b), f"{where}: {a!r} is not {b!r}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_the_repository_config_loads_and_the_templates_see_it_as_written() -> None:
    """What the templates read is config.yaml itself, value for value and type for type (3 stays
    3, "5m" stays "5m"), so typing the knobs changed no rendered rule."""
    cfg = load_rules()
    assert isinstance(cfg, AlertRulesConfig)
    _same(cfg.template_values(), yaml.safe_load(CONFIG.read_text(encoding="utf-8")))
    assert cfg.evaluation_interval == 5.0  # durations are seconds in Python
    assert cfg.uptime.response_time.warning_seconds == 3
    assert cfg.slo.error_budget == pytest.approx(0.001)


def test_the_model_is_frozen() -> None:
    cfg = load_rules()
    with pytest.raises(ValueError, match="frozen"):
        cfg.slo.availability_target = 0.99  # type: ignore[misc]


def test_every_scrape_job_is_a_selector() -> None:
    assert set(get_args(Job)) == set(Selectors.model_fields)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("evaluation_interval: 5s", "evaluation_intervall: 5s", "evaluation_intervall"),
        ("    quorum_ratio: 0.5", "    quorum_ratoi: 0.5", "uptime.down.quorum_ratoi"),
        ("    warning_seconds: 3", "    warning_secnds: 3", "uptime.response_time.warning_secnds"),
        ("  page_for: 2m", "  page_fro: 2m", "slo.page_fro"),
        (
            "{long: 1h, short: 5m, factor: 14.4}",
            "{long: 1h, shrt: 5m, factor: 14.4}",
            "slo.page[0].shrt",
        ),
    ],
)
def test_a_misspelt_key_is_refused_with_its_dotted_key(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    found = problems(copy_with(tmp_path, old, new))
    assert f"{key}: unknown key" in found
    # The key it was meant to be is reported missing: no default hides the typo.
    assert any(p.endswith("Field required") for p in found), found


def test_for_is_read_under_its_own_name(tmp_path: Path) -> None:
    """`for` is `for_` in Python; the file must still say `for` (for_ is an unknown key)."""
    found = problems(
        copy_with(tmp_path, "    p95_seconds: 2\n    for: 10m", "    p95_seconds: 2\n    for_: 10m")
    )
    assert "vercel.page_load.for_: unknown key" in found
    assert "vercel.page_load.for: Field required" in found


@pytest.mark.parametrize("target", [1, 1.0, 0, 0.0, -0.5, 99.9, "0.999", True])
def test_an_out_of_range_slo_is_refused(tmp_path: Path, target: object) -> None:
    found = problems(changed(tmp_path, "slo.availability_target", target))
    assert found, target
    assert all(p.startswith("slo.availability_target") for p in found), found


@pytest.mark.parametrize(
    ("key", "value", "where", "message"),
    [
        ("uptime.down.for", 5, "uptime.down.for", "must be a duration string"),
        ("uptime.down.for", "5 minutes", "uptime.down.for", "is not a duration"),
        ("uptime.down.for", "0s", "uptime.down.for", "greater than zero"),
        ("evaluation_interval", "0.5ms", "evaluation_interval", "whole number of milliseconds"),
        ("uptime.down.quorum_ratio", 1, "uptime.down.quorum_ratio", "less than 1"),
        (
            "vercel.errors.critical_ratio",
            0.005,
            "vercel.errors",
            "warning_ratio (0.01) must be below critical_ratio (0.005)",
        ),
        (
            "uptime.response_time.critical_seconds",
            2,
            "uptime.response_time",
            "warning_seconds (3) must be below critical_seconds (2)",
        ),
        ("uptime.tls.error_days", 30, "uptime.tls", "error_days (30) must be below warning_days"),
        (
            "billing.budget.warning_ratio",
            1.2,
            "billing.budget",
            "warning_ratio (1.2) must be below",
        ),
        (
            "supabase.wraparound.critical_remaining",
            0.6,
            "supabase.wraparound",
            "critical_remaining (0.6) must be below warning_remaining (0.5)",
        ),
        ("slo.page.0.short", "2h", "slo.page[0]", "short (2h) must be shorter than long (1h)"),
        ("slo.page.0.short", "10m", "slo", "must list every page and ticket window; missing 10m"),
        ("slo.windows", [], "slo.windows", "at least 1 item"),
        ("exporters.optional", ["vercel", "bililng"], "exporters.optional[1]", "'uptime'"),
        ("selectors.uptime", '{job="uptime"}', "selectors.uptime", "write the matchers only"),
        ("vercel.cache_hits", "HIT|(", "vercel.cache_hits", "not a valid regular expression"),
        ("vercel.build.min_builds", 2.5, "vercel.build.min_builds", "valid integer"),
        ("deployments.suspect_window_seconds", "1800", "deployments", "valid integer"),
        ("vercel.page_load.p95_seconds", "2", "vercel.page_load", "must be a number, not str"),
        ("billing.spike.factor", True, "billing.spike.factor", "must be a number, not bool"),
        (
            "vercel.drains.silent_after_seconds",
            86400,
            "vercel.drains",
            "shorter than remembered (1d)",
        ),
        ("slo.evidence.min_failed", 0, "slo.evidence.min_failed", "greater than 0"),
        (
            "vercel.errors.evidence.min_requests",
            2.5,
            "vercel.errors.evidence.min_requests",
            "valid integer",
        ),
        ("runbook_base_url", "github.com/runbooks", "runbook_base_url", "absolute http"),
        ("runbook_base_url", "https://x.example/rb#top", "runbook_base_url", "query or fragment"),
    ],
)
def test_bad_values_are_refused_with_their_key(
    tmp_path: Path, key: str, value: object, where: str, message: str
) -> None:
    found = problems(changed(tmp_path, key, value))
    assert any(p.startswith(f"{where}") and message in p for p in found), found


@given(st.integers(min_value=1, max_value=400 * 86_400_000))
def test_durations_render_back_to_what_they_parse_from(ms: int) -> None:
    text = prom_duration(ms / 1000)
    assert parse_duration(text) == pytest.approx(ms / 1000)


@pytest.mark.parametrize(
    ("written", "rendered"),
    [
        ("5s", "5s"),
        ("5m", "5m"),
        ("90s", "1m30s"),
        ("1.5h", "1h30m"),
        ("7d", "7d"),
        ("250ms", "250ms"),
    ],
)
def test_durations_render_in_the_largest_units(written: str, rendered: str) -> None:
    assert prom_duration(parse_duration(written)) == rendered


def test_the_build_exits_2_and_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = copy_with(tmp_path, "    quorum_ratio: 0.5", "    quorum_ratoi: 0.5")
    out = tmp_path / "out"
    assert build_main(["build", "--config", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: uptime.down.quorum_ratoi: unknown key" in err
    assert not out.exists()  # nothing written from a bad config


def test_the_build_cli_exits_2_on_a_bad_config(tmp_path: Path) -> None:
    bad = changed(tmp_path, "slo.availability_target", 1.5)
    res = subprocess.run(
        [sys.executable, "-m", "alert_rules", "build", "--check", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "slo.availability_target: Input should be less than 1" in res.stderr


def test_rules_render_the_models_values(tmp_path: Path) -> None:
    path = changed(tmp_path, "uptime.response_time.warning_seconds", 4)
    path = changed_in(path, "runbook_base_url", "https://runbooks.example/wsinfra/")
    out = tmp_path / "out"
    assert build_main(["build", "--config", str(path), "--out", str(out)]) == 0
    rules = [
        r
        for g in yaml.safe_load((out / "uptime.alerts.yml").read_text())["groups"]
        for r in g["rules"]
        if r.get("alert") == "UptimeResponseTimeHigh" and r["labels"]["severity"] == "warning"
    ]
    assert len(rules) == 1
    assert "> 4)" in rules[0]["expr"]
    assert rules[0]["annotations"]["threshold"] == "4"
    assert rules[0]["annotations"]["runbook_url"] == (
        "https://runbooks.example/wsinfra/UptimeResponseTimeHigh.md#uptimeresponsetimehigh"
    )


def test_prometheus_evaluates_at_the_configs_interval(tmp_path: Path) -> None:
    committed = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert committed["global"]["evaluation_interval"] == prom_duration(
        load_rules().evaluation_interval
    )
    slower = load_rules(changed(tmp_path, "evaluation_interval", "15s"))
    assert yaml.safe_load(render_prometheus(slower))["global"]["evaluation_interval"] == "15s"


def _dashboards(tmp_path: Path, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # A new process: dashboards are drawn from one config per process (dashboards/rules.py).
    return subprocess.run(
        [sys.executable, "-m", "dashboards", "build", "--config", str(config), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def _steps(doc: dict[str, Any], title: str) -> list[Any]:
    panel = next(p for p in doc["panels"] if p.get("title") == title)
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_dashboards_draw_thresholds_windows_and_links_from_the_model(tmp_path: Path) -> None:
    path = changed(tmp_path, "vercel.page_load.p95_seconds", 3)
    changed_in(path, "vercel.cache.window", "1h")
    changed_in(path, "runbook_base_url", "https://runbooks.example/wsinfra")
    changed_in(path, "slo.availability_target", 0.995)
    out = tmp_path / "out"
    res = _dashboards(tmp_path, path, "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    overview = json.loads((out / "wsinfra-overview.json").read_text())
    vercel = json.loads((out / "wsinfra-vercel.json").read_text())
    assert _steps(overview, "Vercel page p95 (all regions)") == [None, 3]
    assert _steps(overview, "Uptime over 30 days, per target") == [None, 0.995]
    exprs = json.dumps([overview, vercel])
    assert "vercel_cache_hits:ratio_rate1h" in exprs
    assert "vercel_cache_hits:ratio_rate30m" not in exprs
    links = [link["url"] for p in overview["panels"] for link in p.get("links", [])]
    assert links
    assert all(u.startswith("https://runbooks.example/wsinfra/") for u in links), links
    assert "https://runbooks.example/wsinfra" in [link["url"] for link in overview["links"]]


def test_the_dashboards_build_exits_2_on_a_bad_config(tmp_path: Path) -> None:
    bad = copy_with(tmp_path, "    quorum_ratio: 0.5", "    quorum_ratoi: 0.5")
    res = _dashboards(tmp_path, bad, "--check")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "uptime.down.quorum_ratoi: unknown key" in res.stderr
