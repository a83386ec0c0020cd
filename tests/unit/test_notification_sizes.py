"""Notifications stay readable and complete in a big outage: golden renders (by the real
amtool) of groups of 1, 5, 50 and 500 alerts, firing, resolved and mixed, each within Slack's
and PagerDuty's limits, and no alert of a group silently dropped."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from alertmanager.runtime import TEMPLATES
from tests.alertmanager.groups import group
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "alertmanager" / "golden" / "groups"
PARTS = {
    "slack_title": "wsinfra.slack.title",
    "slack_text": "wsinfra.slack.text",
    "pagerduty_description": "wsinfra.pagerduty.description",
    "pagerduty_details": "wsinfra.pagerduty.details",
}
# Slack cuts a message's text at 40,000 characters; we promise (wsinfra.tmpl) under ~11,000 for
# any group. PagerDuty's summary is at most 1,024 characters.
LIMITS = {
    "slack_title": 200,
    "slack_text": 11_000,
    "pagerduty_description": 1_024,
    "pagerduty_details": 11_000,
}
CASES = [(kind, n) for kind in ("firing", "resolved", "mixed") for n in (1, 5, 50, 500)] + [
    ("differing", 5),
    ("differing", 50),
]
MARK = "\n=====8<=====\n"


def render(amtool: str, data: dict[str, object], tmp: Path) -> dict[str, str]:
    """Every part of one notification, from one amtool run."""
    path = tmp / "data.json"
    path.write_text(json.dumps(data))
    text = MARK.join(f'{{{{ template "{name}" . }}}}' for name in PARTS.values())
    res = subprocess.run(
        [
            amtool,
            "template",
            "render",
            f"--template.glob={TEMPLATES}/*.tmpl",
            f"--template.text={text}",
            f"--template.data={path}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return dict(zip(PARTS, res.stdout.rstrip("\n").split(MARK), strict=True))


def listed(text: str, heading: str) -> tuple[list[str], int]:
    """The alerts a section names (its bullet lines) and how many it counts as 'and K more'."""
    m = re.search(
        rf"^{heading} \((\d+)\):\n((?:(?:• |   ).*\n)*)(?:…and (\d+) more)?", text + "\n", re.M
    )
    if m is None:
        return [], 0
    bullets = [line[2:].split(" ")[0] for line in m[2].splitlines() if line.startswith("• ")]
    return bullets, int(m[3] or 0)


@pytest.mark.parametrize(("kind", "n"), CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_group_renders_match_golden_and_fit_the_limits(
    amtool: str, kind: str, n: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    parts = render(amtool, group(kind, n), tmp_path)
    for part, text in parts.items():
        golden = GOLDEN / f"{kind}_{n}.{part}.txt"
        if request.config.getoption("--update-golden"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text)
        assert golden.exists(), f"{golden} missing: run pytest --update-golden and review it"
        assert text == golden.read_text(), f"{golden.name} differs"
        assert len(text) <= LIMITS[part], f"{kind} x{n} {part}: {len(text)} characters"


@pytest.mark.parametrize(("kind", "n"), CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_no_alert_of_a_group_is_silently_dropped(
    amtool: str, kind: str, n: int, tmp_path: Path
) -> None:
    data = group(kind, n)
    alerts: list[dict[str, dict[str, str]]] = data["alerts"]  # type: ignore[assignment]
    parts = render(amtool, data, tmp_path)
    for part in ("slack_text", "pagerduty_details"):
        text = parts[part]
        if n == 1:  # one alert: its own full block names it
            assert alerts[0]["labels"]["target"] in text
            continue
        for status, heading in (("firing", "Firing"), ("resolved", "Recovered")):
            want = [a for a in alerts if a["status"] == status]
            names, more = listed(text, heading)
            assert len(names) + more == len(want), f"{part} {heading}: {names}, +{more}"
            assert len(names) == min(len(want), 20)
            # The ones listed are the group's, in its order, each once (with its alert name
            # first when the group mixes names).
            expected = [
                a["labels"]["target"]
                if "alertname" in data["commonLabels"]
                else a["labels"]["alertname"]  # type: ignore[operator]
                for a in want[:20]
            ]
            assert names == expected
            if more:
                link = re.search(rf"…and {more} more \S+: (\S+)", text)
                assert link, text[-300:]
                assert link[1].startswith(
                    "http://127.0.0.1:9093/#/alerts?receiver=critical&filter=%7B"
                )


def test_one_line_per_alert_holds_who_where_the_value_and_since(
    amtool: str, tmp_path: Path
) -> None:
    text = render(amtool, group("firing", 50), tmp_path)["slack_text"]
    # The shared text once, not once per alert.
    assert text.count("*Remediation:*") == 1
    assert text.count("*Runbook:*") == 1
    assert text.startswith("*Uptime target is down from a quorum of probe regions.*\n")
    assert "• web-001 · value 1 (threshold 0.5) · since 2026-11-25 10:00:05 UTC\n" in text
    assert "…and 30 more firing: " in text
    # Small groups keep each alert's description; big ones do not repeat it.
    assert "web-001 (web) fails from 100%" not in text
    small = render(amtool, group("firing", 5), tmp_path)["slack_text"]
    assert "   web-001 (web) fails from 100% of probe regions." in small


def test_resolved_messages_name_what_recovered_and_how_long_it_was_down(
    amtool: str, tmp_path: Path
) -> None:
    parts = render(amtool, group("resolved", 50), tmp_path)
    assert parts["slack_title"] == "[RESOLVED] UptimeTargetDown (50 recovered)"
    text = parts["slack_text"]
    assert text.startswith("*Resolved:* Uptime target is down from a quorum of probe regions.\n")
    assert "• web-002 recovered at 10:03:40 UTC after 3m30s\n" in text
    assert "*Remediation:*" not in text


def test_alerts_whose_annotations_differ_keep_their_own_short_block(
    amtool: str, tmp_path: Path
) -> None:
    text = render(amtool, group("differing", 5), tmp_path)["slack_text"]
    assert "*Remediation:*" not in text  # not shared: each alert's own runbook instead
    assert (
        "• UptimeProbeLocationFailing web-001 (eu-west) · value 1 · since 2026-11-25 10:00:05 UTC\n"
        "   A probe region cannot reach the target (the others can). Runbook: "
        "http://127.0.0.1:19700/runbooks/UptimeProbeLocationFailing.md#uptimeprobelocationfailing\n"
    ) in text
