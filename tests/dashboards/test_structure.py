"""Dashboards checked without a Grafana server: generated and current, every panel complete,
no hard-coded datasource, rates over $__rate_interval, and every series a panel reads produced."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from alert_rules.config import load_rules
from dashboards.build import GENERATED
from dashboards.build import main as build_main
from dashboards.lib import stat
from tests.conftest import ROOT
from tests.metrics_produced import metric_names, produced

DASHBOARDS = {p.stem: json.loads(p.read_text()) for p in sorted(GENERATED.glob("*.json"))}
BUILTIN_VARS = {
    "__rate_interval",
    "__range",
    "__interval",
    "__timeFilter",
    "__timeFrom",
    "__timeTo",
    "__timeGroupAlias",
}


def panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc["panels"] if p["type"] not in ("row", "text")]


def prom_exprs(doc: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in panels(doc) for t in p.get("targets", []) if "expr" in t]
    out += [v["query"]["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    out += [a["expr"] for a in doc["annotations"]["list"] if "expr" in a]
    return out


def test_generated_dashboards_are_current() -> None:
    assert build_main(["build", "--check"]) == 0, "run `python -m dashboards build` and commit"


def test_check_mode_detects_a_stale_file(tmp_path: Path) -> None:
    assert build_main(["build", "--out", str(tmp_path)]) == 0
    victim = sorted(tmp_path.glob("*.json"))[0]
    victim.write_text(victim.read_text().replace('"refresh": "30s"', '"refresh": "5s"'))
    assert build_main(["build", "--check", "--out", str(tmp_path)]) == 1


def test_the_expected_dashboards_exist() -> None:
    assert set(DASHBOARDS) == {
        "wsinfra-overview",
        "wsinfra-slo",
        "wsinfra-uptime",
        "wsinfra-vercel",
        "wsinfra-deployments",
        "wsinfra-database",
        "wsinfra-costs",
    }


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_identity_tags_and_schema(name: str) -> None:
    doc = DASHBOARDS[name]
    assert doc["uid"] == name
    assert "wsinfra" in doc["tags"]
    assert doc["schemaVersion"] >= 36
    assert doc["title"].startswith("wsinfra / ")
    assert doc["description"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_grid_has_no_overlaps(name: str) -> None:
    taken: set[tuple[int, int]] = set()
    for p in DASHBOARDS[name]["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_has_unit_description_and_a_datasource_variable(name: str) -> None:
    for p in panels(DASHBOARDS[name]):
        where = f"{name}: {p['title']}"
        assert p.get("description"), f"{where}: no description"
        assert p["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
        assert p["targets"], f"{where}: no query"
        for ds in [p["datasource"], *(t["datasource"] for t in p["targets"])]:
            assert re.fullmatch(r"\$\{\w+\}|-- Mixed --", ds["uid"]), (
                f"{where}: hard-coded datasource {ds}"
            )


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_annotations_show_deployments_and_alerts(name: str) -> None:
    names = {a["name"] for a in DASHBOARDS[name]["annotations"]["list"]}
    assert {"Deployments (recorder)", "Alerts (critical, error)"} <= names


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_rates_use_the_rate_interval(name: str) -> None:
    for expr in prom_exprs(DASHBOARDS[name]):
        for fn, window in re.findall(r"\b(rate|irate|increase)\([^\[]*\[([^\]]+)\]", expr):
            if fn in ("rate", "irate"):
                assert window == "$__rate_interval", f"{name}: {expr}"
            else:
                # increase() counts events: over the shown range, or explicitly per hour/6h.
                assert window in ("$__rate_interval", "$__range", "1h", "6h"), f"{name}: {expr}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_variable_used_is_defined(name: str) -> None:
    doc = DASHBOARDS[name]
    defined = {v["name"] for v in doc["templating"]["list"]} | BUILTIN_VARS
    text = json.dumps([doc["panels"], doc["annotations"], doc["templating"]])
    used = set(re.findall(r"\$\{?(\w+)", text))
    assert used <= defined, used - defined


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_series_a_panel_reads_is_produced(name: str) -> None:
    known = produced()
    unknown = {}
    for expr in prom_exprs(DASHBOARDS[name]):
        plain = re.sub(r"\$\{?\w+\}?", "x", expr)
        plain = re.sub(r"label_values\((\w+).*\)", r"\1", plain)
        for metric in metric_names(plain) - known:
            unknown[metric] = expr
    assert not unknown, unknown


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_runbook_links_resolve(name: str) -> None:
    # The base the alerts link to (alert_rules/config.yaml); it serves runbooks/ of this repo.
    base = re.escape(load_rules().runbook_base_url)
    for p in DASHBOARDS[name]["panels"]:
        for link in p.get("links", []):
            m = re.match(rf"{base}/(\w+\.md)#", link["url"])
            assert m, link
            assert (ROOT / "runbooks" / m.group(1)).is_file(), link
    runbooks = [link for link in DASHBOARDS[name]["links"] if link["title"] == "Runbooks"]
    assert [link["url"] for link in runbooks] == [load_rules().runbook_base_url]


def test_the_library_refuses_a_panel_without_unit_or_description() -> None:
    from dashboards.lib import Prom

    with pytest.raises(ValueError, match="description"):
        stat("x", "", "s", [Prom("up")])
    with pytest.raises(ValueError, match="unit"):
        stat("x", "about x", "", [Prom("up")])
