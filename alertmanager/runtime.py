"""Adapt the committed alertmanager.yml to where it runs, changing only paths and hosts.

The routing tree, inhibitions, receivers and templates stay exactly as committed (and as
`amtool check-config` checked them); what differs between compose, the local stack and the
tests is where secrets and templates live and which URLs the recorder and PagerDuty have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
COMMITTED = HERE / "alertmanager.yml"
TEMPLATES = HERE / "templates"
COMPOSE_SECRETS = "/run/secrets/"
COMPOSE_RECORDER = "http://recorder:9700"
SLACK_WEBHOOK_FILE = "slack_webhook_url"
FINANCE_SLACK_WEBHOOK_FILE = "slack_finance_webhook_url"
# The PagerDuty escalation service's routing key (receiver `escalation`, api/escalation.py).
ESCALATION_KEY = "pagerduty_escalation_routing_key"


@dataclass(frozen=True, slots=True)
class Placement:
    secrets_dir: Path
    # None: the recorder is not running here; its webhooks are dropped (receivers stay).
    recorder_url: str | None = None
    # None: keep PagerDuty's real endpoint.
    pagerduty_url: str | None = None
    # False: no pager here (no routing key): the receivers keep Slack and drop PagerDuty, so
    # criticals still reach #ops-alerts.
    pagerduty: bool = True
    # False: no finance Slack webhook here (./wsinfra init --with finance): #finance posts go
    # through the ops Slack webhook instead (a legacy webhook honours the channel; an app's lands
    # in its own channel), so billing alerts still reach a person rather than only the record.
    finance_slack: bool = True
    # False: no key for the escalation service here (secret ESCALATION_KEY): the `escalation`
    # receiver drops its PagerDuty and keeps Slack, so escalations still reach #ops-alerts.
    pagerduty_escalation: bool = True
    templates_dir: Path = TEMPLATES


def load_committed() -> dict[str, Any]:
    doc = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def place(doc: dict[str, Any], where: Placement) -> dict[str, Any]:
    """Return a copy of the config with compose paths and hosts replaced for `where`."""
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(doc))
    out["templates"] = [str(where.templates_dir / "*.tmpl")]

    def secret(path: str) -> str:
        if path.startswith(COMPOSE_SECRETS):
            return str(where.secrets_dir / path.removeprefix(COMPOSE_SECRETS))
        return path

    for recv in out.get("receivers", []):
        hooks = []
        for hook in recv.get("webhook_configs", []):
            if hook["url"].startswith(COMPOSE_RECORDER):
                if where.recorder_url is None:
                    continue
                hook["url"] = where.recorder_url.rstrip("/") + hook["url"].removeprefix(
                    COMPOSE_RECORDER
                )
            auth = hook.get("http_config", {}).get("authorization", {})
            if "credentials_file" in auth:
                auth["credentials_file"] = secret(auth["credentials_file"])
            hooks.append(hook)
        if "webhook_configs" in recv:
            if hooks:
                recv["webhook_configs"] = hooks
            else:
                del recv["webhook_configs"]
        if not where.pagerduty:
            recv.pop("pagerduty_configs", None)
        if not where.pagerduty_escalation and "pagerduty_configs" in recv:
            kept = [
                pd
                for pd in recv["pagerduty_configs"]
                if pd["routing_key_file"] != COMPOSE_SECRETS + ESCALATION_KEY
            ]
            if kept:
                recv["pagerduty_configs"] = kept
            else:
                del recv["pagerduty_configs"]
        for pd in recv.get("pagerduty_configs", []):
            pd["routing_key_file"] = secret(pd["routing_key_file"])
            if where.pagerduty_url is not None:
                pd["url"] = where.pagerduty_url
        for sl in recv.get("slack_configs", []):
            if (
                not where.finance_slack
                and sl["api_url_file"] == COMPOSE_SECRETS + FINANCE_SLACK_WEBHOOK_FILE
            ):
                sl["api_url_file"] = COMPOSE_SECRETS + SLACK_WEBHOOK_FILE
            sl["api_url_file"] = secret(sl["api_url_file"])
    return out


def write_placed(path: Path, where: Placement) -> Path:
    path.write_text(
        "# Generated from alertmanager/alertmanager.yml by alertmanager/runtime.py. Do not edit.\n"
        + yaml.safe_dump(place(load_committed(), where), sort_keys=False),
        encoding="utf-8",
    )
    return path
