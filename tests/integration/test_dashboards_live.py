"""Every dashboard query against real data: the DEMO stack runs (exporters scraped by the real
Prometheus, rules evaluated, the recorder filled by Alertmanager and the demo's deployment
webhooks); each panel's PromQL, with its variables substituted, must return series, and each
SQL query must return rows from the recorder's database."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.conninfo import make_conninfo

from compose.database import admin_conninfo
from dashboards.build import GENERATED
from tests.integration.stack import Stack, running_stack, wait_for
from tests.pg_cluster import Cluster, throwaway_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VARS = {
    "environment": "production",
    "project": ".*",
    "vercel_region": ".*",
    "region": ".*",
    "target": ".*",
    "__rate_interval": "1m",
    "__range": "1h",
    "__interval": "15s",
}
DEMO_TARGETS = 6
VARS.update({"database": ".*", "supabase_project": ".*", "backup_target": ".*"})
# Panels listing one row per uptime target: (dashboard, panel title).
PER_TARGET = {
    ("wsinfra-uptime", "Targets now"),
    ("wsinfra-overview", "Uptime over 30 days, per target"),
    ("wsinfra-slo", "SLA report: uptime targets, last 30 days"),
}


def promql(expr: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: VARS[m.group(1)], expr)


def sql(text: str) -> str:
    text = re.sub(
        r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN now() - interval '7 days' AND now()", text
    )
    text = text.replace("$__timeFrom()", "(now() - interval '7 days')").replace(
        "$__timeTo()", "now()"
    )
    return re.sub(r"\$__timeGroupAlias\((\w+), '1d'\)", r"date_trunc('day', \1) AS time", text)


def queries(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for p in doc["panels"]:
        for t in p.get("targets", []):
            yield p["title"], t
    for a in doc["annotations"]["list"]:
        if "expr" in a:
            yield f"annotation {a['name']}", {"expr": a["expr"]}
        if "rawSql" in a:
            yield f"annotation {a['name']}", {"rawSql": a["rawSql"]}
    for v in doc["templating"]["list"]:
        if v["type"] == "query":
            m = re.match(r"label_values\((.*), (\w+)\)$", v["query"]["query"])
            assert m, v
            yield f"variable {v['name']}", {"expr": f"count by ({m.group(2)}) ({m.group(1)})"}


@pytest.fixture(scope="module")
def shop() -> Iterator[Cluster]:
    """A database with pg_stat_statements and a table read without its index, so the slow
    statement and missing-index panels have rows (the machine's PostgreSQL may not preload
    pg_stat_statements)."""
    with throwaway_cluster({"shared_preload_libraries": "pg_stat_statements"}) as c:
        with psycopg.connect(c.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute(
                "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int, total numeric)"
            )
            conn.execute(
                "INSERT INTO orders (customer_id, total) SELECT g %% 5000, g FROM generate_series(1, 50000) g",
                (),
            )
            conn.execute("ANALYZE orders")
            # Supabase's auth.users, for the active-user counts.
            conn.execute("CREATE SCHEMA auth")
            conn.execute(
                "CREATE TABLE auth.users (id uuid PRIMARY KEY, last_sign_in_at timestamptz)"
            )
            conn.execute(
                "INSERT INTO auth.users SELECT gen_random_uuid(), now() - (g || ' hours')::interval"
                " FROM generate_series(1, 50) g"
            )
            for i in range(60):
                conn.execute("SELECT count(*) FROM orders WHERE customer_id = %s", (i,))
        # The shop keeps serving: "slowest statements now" lists what ran in the rule's window,
        # and a database idle for that long rightly has nothing to list.
        stop = threading.Event()
        traffic = threading.Thread(target=shop_traffic, args=(c.dsn(), stop), daemon=True)
        traffic.start()
        try:
            yield c
        finally:
            stop.set()
            traffic.join(timeout=10)


def shop_traffic(dsn: str, stop: threading.Event) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        i = 0
        while not stop.wait(1.0):
            conn.execute("SELECT count(*) FROM orders WHERE customer_id = %s", (i % 5000,))
            i += 1


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, shop: Cluster) -> Iterator[Stack]:
    def watch_the_shop(s: Stack) -> None:
        # The DEMO's Supabase parts (Management API, project metrics) plus the shop database.
        from compose import demo

        secrets = s.run_dir_path / "demo" / "secrets"
        api = f"http://127.0.0.1:{s.ports['SUPABASE_API']}"
        doc = {
            "databases": [{"name": "shop", "conninfo": shop.dsn()}],
            "management": demo.demo_supabase_management(
                api, str(secrets / "supabase_access_token")
            ),
            "project_metrics": demo.demo_project_metrics(api, str(secrets / "supabase_keys")),
        }
        (s.config_dir / "supabase.yaml").write_text(yaml.safe_dump(doc))

    yield from running_stack(tmp_path_factory.mktemp("dash"), prepare=watch_the_shop)


def test_every_panel_query_returns_data(stack: Stack) -> None:
    dsn = make_conninfo(admin_conninfo(), dbname=stack.env["WSINFRA_RECORDER_DB"])
    # The slowest producers: 1m rule groups (30-day SLO, Web Vitals), the first API refresh,
    # the replayed deployment webhooks, and a firing alert recorded (the Watchdog is info).
    wait_for(
        "slow rule groups, deployments and Web Vitals",
        lambda: (
            stack.query("project:vercel_error_budget_remaining:ratio30d")
            and stack.query("target:uptime_error_budget_remaining:ratio30d")
            and stack.query("project:vercel_web_vital_cls:p75_rate30m")
            and stack.query("project_region:vercel_cache_hits:ratio_rate30m")
            and stack.query("vercel_production_deployment_info")
            # A build seen finishing: deployments in flight at start complete within ~2 minutes.
            and stack.query("vercel_deployment_build_duration_seconds_count > 0")
            and len(stack.query("uptime_probe_success")) == 2 * DEMO_TARGETS
            # The billing exporter's first refresh, scraped, and its rules over active users.
            and stack.query("job:billing_cost_per_active_user_usd:ratio")
            # The shop's traffic over the slow-statement window.
            and stack.query("project_queryid:supabase_db_statement_mean_seconds:rate2m")
            # The backup worker's first backup and the restore drill that follows it.
            and stack.query('backup_drill_last_passed{type="restore"} == 1')
        ),
        timeout=150,
        every=2,
    )
    with psycopg.connect(dsn) as conn:
        wait_for(
            "deployments in the recorder",
            lambda: conn.execute("SELECT count(*) FROM deployment_history").fetchone()[0] > 10,  # type: ignore[index]
            timeout=60,
        )
        # A critical alert resolved, as the deployments dashboard's time-to-restore reads them.
        conn.execute(
            "INSERT INTO infrastructure_alerts (alert_id, alert_type, severity, service_name, alert_title,"
            " alert_description, triggered_at, resolved_at) VALUES ('test-restore', 'UptimeTargetDown',"
            " 'critical', 'web', 'down', 'down', now() - interval '1 hour', now() - interval '50 minutes')"
        )
        conn.commit()
        empty: list[str] = []
        incident_queries: list[tuple[str, str]] = []
        checked = 0
        for path in sorted(GENERATED.glob("*.json")):
            doc = json.loads(path.read_text())
            for title, target in queries(doc):
                where = f"{doc['uid']}: {title}"
                if "rawSql" in target:
                    rows = conn.execute(sql(target["rawSql"])).fetchall()
                    if not rows:
                        empty.append(f"{where}: no rows")
                elif "ALERTS{" in target["expr"] and "severity=~" in target["expr"]:
                    incident_queries.append((where, target["expr"]))
                else:
                    series = stack.query(promql(target["expr"]))
                    if not series:
                        empty.append(f"{where}: no series for {promql(target['expr'])}")
                    elif (doc["uid"], title) in PER_TARGET and len(series) != DEMO_TARGETS:
                        empty.append(
                            f"{where}: {len(series)} rows, want one per target ({DEMO_TARGETS})"
                        )
                checked += 1
    assert checked > 60
    assert not empty, "\n".join(empty)
    # The alert annotations show incidents: a healthy demo has none, so make one.
    assert incident_queries
    assert stack.cli("fault", "down").returncode == 0
    try:
        wait_for(
            "a critical alert firing",
            lambda: stack.query('ALERTS{alertstate="firing", severity="critical"}'),
            timeout=90,
        )
        for where, expr in incident_queries:
            assert stack.query(promql(expr)), f"{where}: no series during an outage"
        check_active_alerts_panel(dsn)
    finally:
        assert stack.cli("fault", "ok").returncode == 0


def panel_sql(uid: str, title: str) -> str:
    doc = json.loads((GENERATED / f"{uid}.json").read_text())
    (panel,) = [p for p in doc["panels"] if p["title"] == title]
    (target,) = panel["targets"]
    return str(target["rawSql"])


def check_active_alerts_panel(dsn: str) -> None:
    """The overview's Active alerts panel, as Grafana runs it, lists the outage's critical alert
    that Alertmanager delivered to the recorder, with its value, and who acknowledged it once
    someone has; the record says a person was paged for it (notification_sent), and not for the
    Watchdog, which reaches only the heartbeat."""
    active = sql(panel_sql("wsinfra-overview", "Active alerts"))
    with psycopg.connect(dsn, autocommit=True) as conn:

        def critical_rows() -> list[tuple[Any, ...]]:
            return [r for r in conn.execute(active).fetchall() if r[2] == "critical"]

        def paged() -> bool:
            row = conn.execute(
                "SELECT bool_and(notification_sent) FROM infrastructure_alerts"
                " WHERE resolved_at IS NULL AND severity = 'critical'"
            ).fetchone()
            return bool(row and row[0])

        def target_down() -> list[tuple[Any, ...]]:
            down = "Uptime target is down from a quorum of probe regions."
            return [r for r in critical_rows() if r[0] == down]

        rows = wait_for("the firing alert in the Active alerts panel", target_down, timeout=60)
        for _title, service, _severity, value, since, acknowledged in rows:
            assert service
            assert value is not None
            assert since is not None
            assert acknowledged is None
        wait_for("the page recorded as notified", paged, timeout=60)
        watchdog = conn.execute(
            "SELECT DISTINCT notification_sent FROM infrastructure_alerts WHERE alert_type = 'Watchdog'"
        ).fetchall()
        assert watchdog == [(False,)]
        # Acknowledged (as the operator API writes it: the caller's user id): the panel names them.
        oncall = uuid.uuid4()
        conn.execute(
            "INSERT INTO auth.users (id, email) VALUES (%s, 'oncall@example.com')", (oncall,)
        )
        conn.execute(
            "UPDATE infrastructure_alerts SET acknowledged_by = %s, acknowledged_at = now()"
            " WHERE resolved_at IS NULL AND severity = 'critical'",
            (oncall,),
        )
        assert {r[5] for r in critical_rows()} == {"oncall@example.com"}
