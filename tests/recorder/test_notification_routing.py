"""notification_sent against the real routing: the committed alertmanager.yml in a real
Alertmanager, delivering to the real recorder (real PostgreSQL) and to the Slack/PagerDuty sink.

For every label set of tests/alertmanager/routes.yaml, `amtool config routes test` says which
receivers the alert reaches; the recorder must hear from exactly those of them that post to it,
and store notification_sent true exactly when one of them notifies a person. The billing 50 %
budget notice must reach finance's Slack channel.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from alertmanager.runtime import Placement, write_placed
from compose.processes import ROOT, alertmanager_argv, free_port, spawn, stop, wait_ready
from fakes.sink import SLACK, make_sink
from recorder.app import make_app
from recorder.config import Database, Secrets
from recorder.store import PgStore
from tests.conftest import binary
from tests.recorder.samples import TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROUTES = yaml.safe_load((ROOT / "tests" / "alertmanager" / "routes.yaml").read_text())
OPS_HOOK = "T0OPS/B0OPS/ops-token"
FINANCE_HOOK = "T0FIN/B0FIN/finance-token"
PAGER_KEY = "p" * 32


def person_receivers(config: dict[str, Any]) -> set[str]:
    """Receivers with an integration a person reads (anything but a webhook)."""
    return {
        r["name"]
        for r in config["receivers"]
        if any(k.endswith("_configs") and k != "webhook_configs" and r[k] for k in r)
    }


def recorder_receivers(config: dict[str, Any]) -> set[str]:
    """Receivers that post notifications to the recorder's Alertmanager webhook."""
    return {
        r["name"]
        for r in config["receivers"]
        if any(h["url"].endswith("/webhooks/alertmanager") for h in r.get("webhook_configs", []))
    }


def amtool_receivers(amtool: str, config: Path, labels: dict[str, str]) -> set[str]:
    res = subprocess.run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={config}",
            *(f"{k}={v}" for k, v in labels.items()),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(res.stdout.strip().split(","))


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


async def wait_for(what: str, check: Callable[[], Awaitable[Any]], timeout: float = 90) -> Any:
    """Poll until `check` answers something truthy (the longest group_wait is 30 s)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


async def test_notification_sent_follows_the_real_routing(
    migrated_dsn: str, secrets: Secrets, tmp_path: Path, aiohttp_server: Any
) -> None:
    amtool = binary("amtool")
    binary("prometheus-alertmanager", "alertmanager")
    store = PgStore(Database.model_validate({"conninfo": migrated_dsn, "acquire_timeout": "2s"}))
    await store.open()
    recorder = await aiohttp_server(make_app(store, secrets, max_body_bytes=1 << 20))
    sink = await aiohttp_server(
        make_sink({OPS_HOOK: "#ops-alerts", FINANCE_HOOK: "#finance"}, [PAGER_KEY])
    )
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for name, value in {
        "recorder_token": TOKEN,
        "slack_webhook_url": f"http://127.0.0.1:{sink.port}/services/{OPS_HOOK}",
        "slack_finance_webhook_url": f"http://127.0.0.1:{sink.port}/services/{FINANCE_HOOK}",
        "pagerduty_routing_key": PAGER_KEY,
    }.items():
        (secrets_dir / name).write_text(value + "\n")
    config = write_placed(
        tmp_path / "am.yml",
        Placement(
            secrets_dir=secrets_dir,
            recorder_url=f"http://127.0.0.1:{recorder.port}",
            pagerduty_url=f"http://127.0.0.1:{sink.port}/v2/enqueue",
        ),
    )
    placed = yaml.safe_load(config.read_text())
    people, posting = person_receivers(placed), recorder_receivers(placed)
    assert "recorder" in posting
    assert "recorder" not in people

    # Each case gets its own `case`, `target` and `region`: routing never looks at them, and
    # they keep the cases from inhibiting each other (inhibitions compare target and region).
    cases: dict[str, dict[str, str]] = {}
    for i, case in enumerate(ROUTES):
        tag = f"c{i:02d}"
        cases[tag] = {**case["labels"], "case": tag, "target": f"t-{tag}", "region": f"r-{tag}"}
    # amtool on the very config Alertmanager runs: the reference for where each alert goes.
    expected = {tag: amtool_receivers(amtool, config, labels) for tag, labels in cases.items()}
    for tag, case in zip(cases, ROUTES, strict=True):
        assert expected[tag] == set(case["receivers"]), case["name"]

    port = free_port()
    am = spawn(alertmanager_argv(config, port, tmp_path / "am-data"), tmp_path / "am.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", proc=am)
        alerts = [
            {
                "labels": labels,
                "annotations": {
                    "summary": f"routing case {tag}",
                    "description": f"routing case {tag}",
                    "runbook_url": "http://127.0.0.1:19700/runbooks/",
                },
            }
            for tag, labels in cases.items()
        ]
        async with httpx.AsyncClient(timeout=5) as http:
            resp = await http.post(f"http://127.0.0.1:{port}/api/v2/alerts", json=alerts)
            assert resp.status_code == 200, resp.text

        def heard() -> dict[str, set[str]]:
            got: dict[str, set[str]] = {tag: set() for tag in cases}
            for receiver, tag in rows(
                migrated_dsn,
                "SELECT n.receiver, a->'labels'->>'case' FROM alertmanager_notifications AS n,"
                " jsonb_array_elements(n.payload->'alerts') AS a",
            ):
                got[tag].add(receiver)
            return got

        want_heard = {tag: receivers & posting for tag, receivers in expected.items()}

        async def all_heard() -> bool:
            return heard() == want_heard

        await wait_for("every routed receiver's notification at the recorder", all_heard)
        sent = dict(
            rows(
                migrated_dsn,
                "SELECT alert_rule->'labels'->>'case', notification_sent FROM infrastructure_alerts",
            )
        )
        # Every alert the recorder heard of is a row, notified exactly when a person was told;
        # notices (kind="notice") reach people but are no alerts: never a row.
        assert sent == {
            tag: bool(expected[tag] & people) for tag in cases if expected[tag] & posting
        }
        assert {t for t in cases if not expected[t] & posting} == {
            t for t, labels in cases.items() if labels.get("kind") == "notice"
        }

        # The examples the issue names, spelled out.
        def tag_of(**labels: str) -> str:
            (tag,) = [t for t, ls in cases.items() if labels.items() <= ls.items()]
            return tag

        assert not sent[tag_of(alertname="UptimeHSTSMaxAgeTooShort", severity="info")]
        assert sent[tag_of(alertname="UptimeTargetDown", severity="critical")]
        budget = tag_of(alertname="BillingBudgetConsumed", severity="info")
        assert sent[budget]

        # ... and the person is finance: the notice is in #finance, through finance's webhook.
        async def in_finance() -> list[Any]:
            return [
                m
                for m in sink.app[SLACK].messages
                if m.channel == "#finance" and f"routing case {budget}" in m.text()
            ]

        (message,) = await wait_for("the 50 % notice in #finance", in_finance)
        assert "BillingBudgetConsumed" in message.text()
    finally:
        stop(am)
        await store.close()
