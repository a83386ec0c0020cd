"""End to end on the real Debian Prometheus and Alertmanager, started by the tests on free ports.

The local stack (`python -m compose.stack up`, as `./wsinfra up` runs it) is started in DEMO mode
in a temporary directory: stand-in platform → two uptime exporters → Prometheus → Alertmanager →
the strict Slack/PagerDuty sink. The test breaks the platform and reads what reaches the sink.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from alertmanager.runtime import Placement, write_placed
from compose.database import admin_conninfo
from compose.processes import alertmanager_argv, free_port, spawn, stop, wait_ready
from tests.conftest import binary
from tests.integration.stack import Stack, get_json, running_stack, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    yield from running_stack(tmp_path)


@pytest.mark.slow
def api_health(stack: Stack) -> dict[str, Any]:
    """GET /health as the demo's ops machine caller."""
    token = (stack.run_dir_path / "demo" / "secrets" / "api_demo_token").read_text().strip()
    req = urllib.request.Request(  # noqa: S310 - loopback
        stack.url("API", "/api/infrastructure/health"),
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        return dict(json.loads(resp.read()))


def test_outage_pages_with_text_and_recovery_resolves(stack: Stack) -> None:
    # 1. Healthy: every target probed from both regions, the pipeline alive (Watchdog reaches
    #    Alertmanager), and nobody notified.
    wait_for(
        "12 successful probe series",
        lambda: len(stack.query("uptime_probe_success == 1")) == 12,
        timeout=60,
    )
    # Prometheus may evaluate Watchdog before it has discovered Alertmanager, and then resends
    # only after --rules.alert.resend-delay (1m): watch the healthy platform meanwhile.
    healthy_since = time.monotonic()
    deadline = healthy_since + 120
    while True:
        assert stack.messages() == {"slack": [], "pagerduty": []}, (
            "a healthy platform raised an alert"
        )
        watchdog = any(
            a["labels"]["alertname"] == "Watchdog"
            for a in get_json(stack.url("ALERTMANAGER", "/api/v2/alerts"))
        )
        if watchdog and time.monotonic() - healthy_since >= 20:
            break
        assert time.monotonic() < deadline, "Watchdog never reached Alertmanager"
        time.sleep(2)
    assert stack.query('ALERTS{alertstate="firing", alertname!="Watchdog"}') == []
    # The Vercel exporter is scraped, its deployments come from the fake API, and the drain
    # feed's requests reach the recording rules.
    wait_for(
        "Vercel deployments and drain-fed request rates in Prometheus",
        lambda: (
            stack.query('vercel_up{job="vercel"} == 1')
            and stack.query('vercel_production_deployment_info{project="web"}')
            and len(stack.query('project_region:vercel_requests:rate5m{environment="production"}'))
            == 4
            and stack.query(
                'project_region_kind:vercel_request_duration_seconds:p95_rate5m{route_kind="page"}'
            )
        ),
        timeout=90,
    )

    # The operator API's /health on the same data: Vercel and Supabase seen and healthy,
    # Redis and the external APIs watched by nothing in the demo, so offline.
    expected = {
        "vercel": "healthy",
        "supabase": "healthy",
        "redis": "offline",
        "external_apis": "offline",
    }
    health = wait_for(
        "/health: Vercel and Supabase healthy, Redis and external APIs offline",
        lambda: (
            (h := api_health(stack))
            and {k: v["status"] for k, v in h["services"].items()} == expected
            and h
        ),
        timeout=30,
    )
    assert health["overall_status"] == "degraded"
    assert health["services"]["vercel"]["region_status"], health

    # 2. Slow but within bounds: measured, and still nobody notified.
    assert stack.cli("fault", "slow", "--delay", "1.2").returncode == 0
    wait_for(
        "slow responses measured in both regions",
        lambda: len(stack.query('uptime_probe_duration_seconds{target="web-home"} > 1.2')) == 2,
        timeout=30,
    )
    assert stack.messages() == {"slack": [], "pagerduty": []}

    # 3. Hard down: the page arrives with the live value, the reason, remediation and runbook.
    assert stack.cli("fault", "down").returncode == 0
    fault_at = time.monotonic()

    def firing() -> list[dict[str, Any]]:
        return [
            m
            for m in stack.messages()["slack"]
            if m["text"].startswith("[CRITICAL] UptimeTargetDown")
        ]

    msgs = wait_for("the UptimeTargetDown Slack message", firing, timeout=90)
    fired_after = time.monotonic() - fault_at
    web = next(m for m in msgs if "web-home" in m["text"] or "(web)" in m["text"])
    text = web["text"]
    assert web["channel"] == "#ops-alerts"
    assert "Uptime target is down from a quorum of probe regions." in text
    assert "(web) fails from 100% of probe regions. eu-west: connect. us-east: connect." in text
    assert "*Remediation:*\n1. Open the endpoint yourself" in text
    # The runbook link opens wherever the stack runs: this stack's recorder serves the page,
    # with the alert's heading at the link's anchor.
    runbook = re.search(r"\*Runbook:\* (\S+)", text)
    assert runbook, text
    assert runbook[1] == stack.url("RECORDER", "/runbooks/UptimeTargetDown.md#uptimetargetdown")
    page_url, _, anchor = runbook[1].partition("#")
    with urllib.request.urlopen(page_url, timeout=5) as resp:  # noqa: S310 - loopback
        assert resp.headers.get_content_type() == "text/html"
        assert f'<h1 id="{anchor}">UptimeTargetDown</h1>' in resp.read().decode()
    assert "severity=critical service=web" in text
    pages = wait_for(
        "the PagerDuty trigger",
        lambda: [
            e for e in stack.messages()["pagerduty"] if e["event"]["event_action"] == "trigger"
        ],
        timeout=30,
    )
    assert pages[0]["event"]["payload"]["severity"] == "critical"
    assert "UptimeTargetDown" in pages[0]["event"]["payload"]["summary"]
    # /health says so: the paged web targets belong to Vercel's service.
    health = wait_for(
        "/health: Vercel critical",
        lambda: (h := api_health(stack)) and h["services"]["vercel"]["status"] == "critical" and h,
        timeout=30,
    )
    assert health["overall_status"] == "critical"
    # Latency inhibition: a down target's slow-response alert must not reach anyone.
    assert not [m for m in stack.messages()["slack"] if "UptimeResponseTimeHigh" in m["text"]]

    # 4. Recovery: a distinct resolved message and a PagerDuty resolve follow.
    assert stack.cli("fault", "ok").returncode == 0
    ok_at = time.monotonic()

    def resolved() -> list[dict[str, Any]]:
        return [
            m
            for m in stack.messages()["slack"]
            if m["text"].startswith("[RESOLVED] UptimeTargetDown")
        ]

    done = wait_for("the RESOLVED Slack message", resolved, timeout=120)
    resolved_after = time.monotonic() - ok_at
    assert "recovered at" in done[0]["text"]
    wait_for(
        "the PagerDuty resolve",
        lambda: [
            e for e in stack.messages()["pagerduty"] if e["event"]["event_action"] == "resolve"
        ],
        timeout=30,
    )

    # 5. The recorder has the whole story: one row per alert instance, resolved.
    def recorded() -> list[tuple[Any, ...]]:
        dsn = make_conninfo(admin_conninfo(), dbname=stack.env["WSINFRA_RECORDER_DB"])
        with psycopg.connect(dsn) as conn:
            return conn.execute(
                "SELECT alert_rule->'labels'->>'target', severity, resolved_at IS NOT NULL, "
                "current_metric_value, metric_threshold FROM infrastructure_alerts "
                "WHERE alert_type = 'UptimeTargetDown' ORDER BY 1"
            ).fetchall()

    demo_targets = {
        "web-home",
        "web-dashboard",
        "api-health",
        "web-legacy-redirect",
        "web-tcp",
        "web-https",
    }
    paged = "\n".join(
        m["text"] for m in stack.messages()["slack"] if "UptimeTargetDown" in m["text"]
    )
    # Which targets fired depends on probe timing; every one that reached Slack must be recorded.
    fired = {t for t in demo_targets if f"{t} (" in paged}
    assert fired

    def complete() -> list[tuple[Any, ...]] | None:
        rows = recorded()
        targets = {r[0] for r in rows}
        return rows if fired <= targets and all(r[2] for r in rows) else None

    try:
        got = wait_for("every paged target recorded and resolved", complete, timeout=120)
    except AssertionError:
        raise AssertionError(f"paged {sorted(fired)}, recorded {recorded()}") from None
    targets = [g[0] for g in got]
    assert set(targets) <= demo_targets
    assert len(targets) == len(set(targets)), (
        "one row per alert instance, despite retries and repeats"
    )
    assert all(g[1:] == ("critical", True, 1, 0.5) for g in got), got
    print(
        f"\nalert latency: fired {fired_after:.1f}s after the fault, resolved {resolved_after:.1f}s after recovery"
    )

    # 6. The operator API on the same stack: a manual incident routes, pages and is recorded
    # like a rule's alert; the demo ops machine caller lists, acknowledges and resolves it.
    token = (stack.run_dir_path / "demo" / "secrets" / "api_demo_token").read_text().strip()

    def api(method: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(  # noqa: S310 - loopback
            stack.url("API", "/api/infrastructure/alerts"),
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    status, posted = api(
        "POST",
        {
            "alert_type": "ManualIncident",
            "severity": "critical",
            "service_name": "web",
            "alert_title": "Checkout fails for some customers",
            "alert_description": "Reported by support: card payments time out.",
        },
    )
    assert status == 202, posted
    wait_for(
        "the manual incident in Slack",
        lambda: [
            m
            for m in stack.messages()["slack"]
            if m["text"].startswith("[CRITICAL] ManualIncident")
        ],
        timeout=60,
    )

    def listed() -> list[dict[str, Any]]:
        code, doc = api("GET")
        assert code == 200, doc
        return [a for a in doc["active_alerts"] if a["alert_type"] == "ManualIncident"]

    (incident,) = wait_for("the incident recorded and listed by the API", listed, timeout=60)
    assert incident["alert_title"] == "Checkout fails for some customers"
    status, acked = api("PUT", {"id": incident["id"], "action": "acknowledge", "notes": "on it"})
    assert status == 200, acked
    silences = get_json(stack.url("ALERTMANAGER", "/api/v2/silences"))
    assert any(
        s["status"]["state"] == "active"
        and {
            "name": "incident_id",
            "value": posted["incident_id"],
            "isRegex": False,
            "isEqual": True,
        }
        in s["matchers"]
        for s in silences
    ), silences
    status, resolved = api("PUT", {"id": incident["id"], "action": "resolve", "notes": "fixed"})
    assert status == 200, resolved
    assert resolved["state"] == "resolved"
    assert not listed()

    # 7. Backups: the worker backed the demo database up and a restore drill of it passed
    #    (both start when the stack does); the admin caller sees them through the API, and the
    #    recovery plan's estimate comes from that measured drill.
    wait_for(
        "a passed restore drill of the demo database",
        lambda: stack.query('backup_drill_last_passed{target="wsinfra",type="restore"} == 1'),
        timeout=120,
    )
    admin = (stack.run_dir_path / "demo" / "secrets" / "api_demo_admin_token").read_text().strip()

    def as_admin(path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(  # noqa: S310 - loopback
            stack.url("API", f"/api/infrastructure/{path}"),
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            return json.loads(resp.read())

    listing = as_admin("backups?target=wsinfra")
    assert any(b["backup_status"] == "completed" for b in listing["backups"]), listing
    drills = [d for d in listing["latest_drills"] if d["drill_type"] == "restore"]
    assert drills, listing["latest_drills"]
    assert drills[0]["status"] == "passed", listing["latest_drills"]
    plan = as_admin(
        "disaster-recovery",
        {"recovery_type": "backup_restore", "recovery_scope": "database_only"},
    )
    assert plan["estimate_basis"]["restore_measured"] is True, plan
    assert plan["recovery_plan"]["steps"], plan

    # 8. The report as the usage line and README advertise it: flags pass through to billing.
    month = datetime.now(UTC).strftime("%Y-%m")
    for args in (["--format", "json"], ["--month", month, "--format", "json"]):
        res = stack.wsinfra("report", *args)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["month"] == month
        assert float(doc["current_month"]["total_cost_usd"]) > 0, doc
    text_report = stack.wsinfra("report", "--month", month)
    assert text_report.returncode == 0, text_report.stderr
    assert month in text_report.stdout
    refused = stack.wsinfra("report", "--format", "yaml")
    assert refused.returncode == 2
    assert "invalid choice: 'yaml'" in refused.stderr


def test_inhibitions_on_real_alertmanager(tmp_path: Path) -> None:
    binary("prometheus-alertmanager", "alertmanager")
    port = free_port()
    for name in ("slack_webhook_url", "pagerduty_routing_key", "recorder_token"):
        (tmp_path / name).write_text("http://127.0.0.1:9/unused\n")
    cfg = write_placed(
        tmp_path / "am.yml",
        Placement(secrets_dir=tmp_path, pagerduty_url="http://127.0.0.1:9/v2/enqueue"),
    )
    proc = spawn(alertmanager_argv(cfg, port, tmp_path / "data"), tmp_path / "am.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", proc=proc)

        def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
            return {
                "labels": {"alertname": name, "severity": severity, "service": "web", **labels},
                "annotations": {"summary": name},
            }

        alerts = [
            alert("UptimeTargetDown", "critical", target="web"),
            alert("UptimeResponseTimeHigh", "warning", target="web", region="us-east"),
            alert("UptimeProbeLocationFailing", "warning", target="web", region="eu-west"),
            alert("UptimeResponseTimeHigh", "critical", target="api", region="us-east"),
            alert("UptimeResponseTimeHigh", "warning", target="api", region="us-east"),
            alert("UptimeResponseTimeHigh", "warning", target="api", region="eu-west"),
            alert("VercelErrorRateHigh", "critical", project="web", region="iad1"),
            alert("VercelErrorRateHigh", "warning", project="web", region="iad1"),
            alert("VercelErrorRateHigh", "warning", project="docs", region="iad1"),
            alert("VercelExporterDown", "error", instance="vercel:9703"),
            alert("VercelDrainSilent", "warning", instance="vercel:9703", drain="logs"),
            alert("BillingBudgetConsumed", "critical", instance="billing"),
            alert("BillingBudgetConsumed", "warning", instance="billing"),
            alert("BillingBudgetConsumed", "info", instance="billing"),
        ]
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=5).close()  # noqa: S310 - loopback

        def states() -> dict[tuple[str, str, str, str], str] | None:
            got = get_json(f"http://127.0.0.1:{port}/api/v2/alerts")
            if len(got) < len(alerts):
                return None
            return {
                (
                    a["labels"]["alertname"],
                    a["labels"]["severity"],
                    a["labels"].get("target")
                    or a["labels"].get("project")
                    or a["labels"]["instance"],
                    a["labels"].get("region", ""),
                ): a["status"]["state"]
                for a in got
            }

        def settled() -> dict[tuple[str, str, str, str], str] | None:
            s = states()
            return (
                s
                if s
                and s[("UptimeResponseTimeHigh", "warning", "web", "us-east")] == "suppressed"
                and s[("VercelDrainSilent", "warning", "vercel:9703", "")] == "suppressed"
                else None
            )

        result = wait_for("inhibitions to apply", settled, timeout=20)
        assert result == {
            ("UptimeTargetDown", "critical", "web", ""): "active",
            # a down target silences its latency and location alerts
            ("UptimeResponseTimeHigh", "warning", "web", "us-east"): "suppressed",
            ("UptimeProbeLocationFailing", "warning", "web", "eu-west"): "suppressed",
            # a critical silences the warning of the same alert, target and region only
            ("UptimeResponseTimeHigh", "critical", "api", "us-east"): "active",
            ("UptimeResponseTimeHigh", "warning", "api", "us-east"): "suppressed",
            ("UptimeResponseTimeHigh", "warning", "api", "eu-west"): "active",
            # ... and of the same Vercel project in the same region
            ("VercelErrorRateHigh", "critical", "web", "iad1"): "active",
            ("VercelErrorRateHigh", "warning", "web", "iad1"): "suppressed",
            ("VercelErrorRateHigh", "warning", "docs", "iad1"): "active",
            # the Vercel exporter down: its silent drains are the same news
            ("VercelExporterDown", "error", "vercel:9703", ""): "active",
            ("VercelDrainSilent", "warning", "vercel:9703", ""): "suppressed",
            # budget at 100 %: the 80 % and 50 % instances say less
            ("BillingBudgetConsumed", "critical", "billing", ""): "active",
            ("BillingBudgetConsumed", "warning", "billing", ""): "suppressed",
            ("BillingBudgetConsumed", "info", "billing", ""): "suppressed",
        }
    finally:
        stop(proc)
