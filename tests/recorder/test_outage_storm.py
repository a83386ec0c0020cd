"""Database down mid-storm: real Alertmanager keeps delivering to the recorder while its own
throwaway PostgreSQL cluster (initdb/pg_ctl on a free port) is stopped and started again.
The recorder answers 503 meanwhile, Alertmanager retries, and every alert ends up stored once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from alertmanager.runtime import Placement, write_placed
from compose.processes import ROOT, alertmanager_argv, free_port, spawn, stop, wait_ready
from tests.conftest import binary
from tests.pg_cluster import Cluster, throwaway_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "storm-token"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as c:
        yield c


def post_alerts(am_port: int, alerts: list[dict[str, object]]) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{am_port}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=5).close()  # noqa: S310 - loopback


def test_alerts_survive_a_database_outage_exactly_once(cluster: Cluster, tmp_path: Path) -> None:
    binary("prometheus-alertmanager", "alertmanager")
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE wsinfra")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "recorder_token").write_text(TOKEN + "\n")
    (secrets / "slack_webhook_url").write_text("http://127.0.0.1:9/services/x/y/z\n")
    (secrets / "pagerduty_routing_key").write_text("k" * 32 + "\n")
    cfg = tmp_path / "recorder.yaml"
    cfg.write_text(
        f"database:\n  conninfo: 'host=127.0.0.1 port={cluster.port} user=postgres dbname=wsinfra connect_timeout=2'\n"
        f"  acquire_timeout: 2s\nwebhooks:\n  alertmanager_token_file: {secrets / 'recorder_token'}\n"
    )
    subprocess.run(
        [sys.executable, "-m", "recorder", "migrate", "--config.file", str(cfg)],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    rec_port, am_port = free_port(), free_port()
    recorder = spawn(
        [
            sys.executable,
            "-m",
            "recorder",
            "serve",
            "--config.file",
            str(cfg),
            "--web.listen-address",
            f"127.0.0.1:{rec_port}",
        ],
        tmp_path / "recorder.log",
    )
    am_cfg = write_placed(
        tmp_path / "am.yml",
        Placement(
            secrets_dir=secrets,
            recorder_url=f"http://127.0.0.1:{rec_port}",
            pagerduty_url="http://127.0.0.1:9/v2/enqueue",
        ),
    )
    am = spawn(alertmanager_argv(am_cfg, am_port, tmp_path / "am-data"), tmp_path / "am.log")
    try:
        wait_ready(f"http://127.0.0.1:{rec_port}/-/ready", proc=recorder)
        wait_ready(f"http://127.0.0.1:{am_port}/-/ready", proc=am)
        total = 0

        # Each wave opens new alert groups, so Alertmanager delivers it at once (group_wait 0s
        # on the recorder route) rather than on an existing group's next tick.
        def wave(n: int, tag: str) -> None:
            nonlocal total
            post_alerts(
                am_port,
                [
                    {
                        "labels": {
                            "alertname": f"Storm{tag.title()}{i % 4}",
                            "severity": "warning",
                            "service": f"svc{i % 3}",
                            "target": f"{tag}-{i}",
                        },
                        "annotations": {
                            "summary": "storm",
                            "description": f"alert {tag}-{i}",
                            "value": str(i),
                        },
                    }
                    for i in range(n)
                ],
            )
            total += n

        wave(60, "before")
        time.sleep(3)
        cluster.stop()  # mid-storm
        wave(60, "during")
        time.sleep(8)  # Alertmanager's deliveries now fail with 503 and are retried
        wave(30, "late")
        cluster.start()

        def stored() -> int:
            try:
                with psycopg.connect(cluster.dsn("wsinfra"), connect_timeout=2) as conn:
                    row = conn.execute("SELECT count(*) FROM infrastructure_alerts").fetchone()
                    return int(row[0]) if row else 0
            except psycopg.OperationalError:
                return -1

        deadline = time.monotonic() + 150
        while stored() < total and time.monotonic() < deadline:
            time.sleep(2)
        with psycopg.connect(cluster.dsn("wsinfra")) as conn:
            count, distinct_targets = conn.execute(
                "SELECT count(*), count(DISTINCT alert_rule->'labels'->>'target') FROM infrastructure_alerts"
            ).fetchone() or (0, 0)
        assert (count, distinct_targets) == (total, total), "every alert exactly once"
        with urllib.request.urlopen(f"http://127.0.0.1:{rec_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        line = next(
            x
            for x in text.splitlines()
            if x.startswith(
                'recorder_webhook_errors_total{reason="db_unavailable",source="alertmanager"}'
            )
        )
        assert float(line.rsplit(" ", 1)[1]) >= 1, "the outage was seen as 503s"
    finally:
        stop(am)
        stop(recorder)
