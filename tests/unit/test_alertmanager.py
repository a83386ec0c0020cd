"""Alertmanager config checked by the real amtool: validity, the routing table, golden messages."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from alertmanager.runtime import (
    COMMITTED,
    TEMPLATES,
    Placement,
    load_committed,
    place,
    write_placed,
)
from tests.conftest import ROOT

HERE = ROOT / "tests" / "alertmanager"
ROUTES = yaml.safe_load((HERE / "routes.yaml").read_text())
CASES = sorted(p.stem for p in (HERE / "data").glob("*.json"))
PARTS = ("title", "text", "color", "footer")


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)


def test_committed_config_is_valid(amtool: str) -> None:
    res = run([amtool, "check-config", str(COMMITTED)])
    assert res.returncode == 0, res.stdout + res.stderr


def test_secrets_only_through_files() -> None:
    text = COMMITTED.read_text()
    for field in ("api_url:", "routing_key:", "service_key:", "credentials:", "password:"):
        assert f" {field}" not in text, f"{field} must be its *_file variant"


@pytest.mark.parametrize("case", ROUTES, ids=[c["name"] for c in ROUTES])
def test_routing_table(amtool: str, case: dict[str, object]) -> None:
    labels = [f"{k}={v}" for k, v in dict(case["labels"]).items()]  # type: ignore[call-overload]
    expected = ",".join(case["receivers"])  # type: ignore[arg-type]
    res = run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={COMMITTED}",
            f"--verify.receivers={expected}",
            *labels,
        ]
    )
    assert res.returncode == 0, f"{case['name']}: {res.stdout}{res.stderr}"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("part", PARTS)
def test_template_golden(amtool: str, case: str, part: str, request: pytest.FixtureRequest) -> None:
    res = run(
        [
            amtool,
            "template",
            "render",
            f"--template.glob={TEMPLATES}/*.tmpl",
            f'--template.text={{{{ template "wsinfra.slack.{part}" . }}}}',
            f"--template.data={HERE / 'data' / (case + '.json')}",
        ]
    )
    assert res.returncode == 0, res.stderr
    golden = HERE / "golden" / f"{case}.{part}.txt"
    if request.config.getoption("--update-golden"):
        golden.write_text(res.stdout)
    assert golden.exists(), f"{golden} missing: run pytest --update-golden and review the diff"
    assert res.stdout == golden.read_text()


def test_firing_and_resolved_messages_differ() -> None:
    firing = (HERE / "golden" / "target_down_firing.title.txt").read_text()
    resolved = (HERE / "golden" / "target_down_resolved.title.txt").read_text()
    assert firing.startswith("[CRITICAL]")
    assert resolved.startswith("[RESOLVED]")
    text = (HERE / "golden" / "target_down_firing.text.txt").read_text()
    for must in (
        "fails from 100% of probe regions",
        "*Remediation:*",
        "*Runbook:* http://127.0.0.1:19700/runbooks/UptimeTargetDown.md#",
    ):
        assert must in text


def test_placement_rewrites_only_paths_and_hosts(tmp_path: Path, amtool: str) -> None:
    placed = place(
        load_committed(),
        Placement(
            secrets_dir=tmp_path,
            recorder_url="http://127.0.0.1:1234",
            pagerduty_url="http://127.0.0.1:5/v2/enqueue",
        ),
    )
    original = load_committed()
    assert placed["route"] == original["route"]
    assert placed["inhibit_rules"] == original["inhibit_rules"]
    assert [r["name"] for r in placed["receivers"]] == [r["name"] for r in original["receivers"]]
    dumped = yaml.safe_dump(placed)
    assert "/run/secrets" not in dumped
    assert "recorder:9700" not in dumped
    assert "http://127.0.0.1:1234/webhooks/alertmanager" in dumped
    path = write_placed(tmp_path / "am.yml", Placement(secrets_dir=tmp_path))
    res = run([amtool, "check-config", str(path)])
    assert res.returncode == 0, res.stdout + res.stderr
    # Without a recorder its webhooks are dropped, but its receivers stay, so routing is unchanged.
    assert (
        "webhook_configs"
        not in {r["name"]: r for r in yaml.safe_load(path.read_text())["receivers"]}["recorder"]
    )


def test_without_a_pager_criticals_keep_slack_and_drop_pagerduty(
    tmp_path: Path, amtool: str
) -> None:
    path = write_placed(tmp_path / "am.yml", Placement(secrets_dir=tmp_path, pagerduty=False))
    res = run([amtool, "check-config", str(path)])
    assert res.returncode == 0, res.stdout + res.stderr
    receivers = {r["name"]: r for r in yaml.safe_load(path.read_text())["receivers"]}
    assert "pagerduty_configs" not in receivers["critical"]
    assert receivers["critical"]["slack_configs"][0]["channel"] == "#ops-alerts"
    assert "pagerduty_routing_key" not in path.read_text()


@pytest.mark.parametrize("case", CASES)
def test_golden_data_has_the_common_parts_alertmanager_would_compute(case: str) -> None:
    from tests.alertmanager.groups import notification

    data = json.loads((HERE / "data" / f"{case}.json").read_text())
    again = notification(data["alerts"], data["receiver"], tuple(data["groupLabels"]))
    assert data["commonLabels"] == again["commonLabels"]
    assert data["commonAnnotations"] == again["commonAnnotations"]
