"""The committed routing keeps notification_sent true to its word (docs/alert-routing.md).

The recorder marks an alert notified when a notification of it comes from any receiver other
than the record-only mirror. That is only true while every receiver posting to the recorder's
Alertmanager webhook, other than the mirror, also notifies a person, and every receiver that
notifies a person also posts there. A receiver added or edited in alertmanager.yml is held to
that here; tests/recorder/test_notification_routing.py checks it end to end on the real routing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from alertmanager.runtime import (
    COMPOSE_RECORDER,
    COMPOSE_SECRETS,
    Placement,
    load_committed,
    write_placed,
)
from recorder.payloads import RECORD_ONLY_RECEIVERS

WEBHOOK = COMPOSE_RECORDER + "/webhooks/alertmanager"
DOC = load_committed()
RECEIVERS = {r["name"]: r for r in DOC["receivers"]}


def integrations(receiver: dict[str, Any]) -> set[str]:
    return {k for k, v in receiver.items() if k.endswith("_configs") and v}


def notifies_a_person(receiver: dict[str, Any]) -> bool:
    """Slack, PagerDuty, e-mail, …: anything but a webhook is read by a person."""
    return bool(integrations(receiver) - {"webhook_configs"})


# Receivers of notices (kind="notice"), which are not alerts.
NOTICE_RECEIVERS = {"ops-notices"}


def test_notices_reach_only_the_notice_receiver() -> None:
    routes = DOC["route"]["routes"]
    notice = [r for r in routes if r.get("matchers") == ['kind="notice"']]
    assert [r["receiver"] for r in notice] == sorted(NOTICE_RECEIVERS)
    assert notice[0].get("continue") is not True
    # Right after the mirror, so no route above it can take a notice.
    assert routes.index(notice[0]) == 1


def recorder_hooks(receiver: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in receiver.get("webhook_configs", []) if h["url"] == WEBHOOK]


@pytest.mark.parametrize("name", sorted(RECEIVERS))
def test_every_receiver_is_either_the_mirror_or_tells_the_record(name: str) -> None:
    receiver = RECEIVERS[name]
    hooks = recorder_hooks(receiver)
    if name in NOTICE_RECEIVERS:
        # Notices (who acknowledged what) tell people but are no alerts: never recorded.
        assert notifies_a_person(receiver)
        assert not hooks, f"{name} carries notices, which are not alert rows"
    elif name in RECORD_ONLY_RECEIVERS:
        assert not notifies_a_person(receiver), f"{name} is the record-only mirror"
        assert len(hooks) == 1
    elif notifies_a_person(receiver):
        # Otherwise its alerts would say notification_sent false although a person was told.
        assert len(hooks) == 1, f"{name} notifies a person: give it the recorder's webhook"
    else:
        # A receiver nobody reads posting here would mark its alerts notified.
        assert not hooks, f"{name} notifies no one: it must not post to {WEBHOOK}"
    for hook in hooks:
        # Every alert of every notification, resolutions too, with the recorder's token.
        assert hook["send_resolved"] is True
        assert hook["max_alerts"] == 0
        auth = hook["http_config"]["authorization"]
        assert auth == {
            "type": "Bearer",
            "credentials_file": COMPOSE_SECRETS + "recorder_token",
        }


def test_every_alert_reaches_the_mirror_first() -> None:
    """The mirror is the first route, matches everything and continues: every alert is in the
    record, notified or not."""
    first = DOC["route"]["routes"][0]
    assert first["receiver"] in RECORD_ONLY_RECEIVERS
    assert first.get("continue") is True
    # Everything but notices (kind="notice"); an alert without a kind label matches.
    assert first.get("matchers") == ['kind!="notice"']
    assert not first.get("match")
    assert not first.get("match_re")
    assert not first.get("mute_time_intervals")
    assert not first.get("active_time_intervals")


def test_billing_alerts_go_to_finance_slack() -> None:
    (slack,) = RECEIVERS["finance"]["slack_configs"]
    assert slack["channel"] == "#finance"
    assert slack["api_url_file"] == COMPOSE_SECRETS + "slack_finance_webhook_url"


def test_without_a_finance_webhook_finance_posts_through_the_ops_webhook(
    tmp_path: Path, amtool: str
) -> None:
    path = write_placed(tmp_path / "am.yml", Placement(secrets_dir=tmp_path, finance_slack=False))
    res = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    placed = {r["name"]: r for r in yaml.safe_load(path.read_text())["receivers"]}
    (slack,) = placed["finance"]["slack_configs"]
    assert slack["api_url_file"] == str(tmp_path / "slack_webhook_url")
    assert slack["channel"] == "#finance"
    assert "slack_finance_webhook_url" not in path.read_text()
    # With one, it is used.
    path = write_placed(tmp_path / "am2.yml", Placement(secrets_dir=tmp_path))
    placed = {r["name"]: r for r in yaml.safe_load(path.read_text())["receivers"]}
    assert placed["finance"]["slack_configs"][0]["api_url_file"] == str(
        tmp_path / "slack_finance_webhook_url"
    )
