"""Database down mid-storm: real Alertmanager keeps delivering to the recorder while its own
throwaway PostgreSQL cluster (initdb/pg_ctl on a free port) is stopped for 30 s. Alerts fire and
resolve inside the outage and the recorder is killed and restarted during it. The recorder
journals what it accepts; afterwards every alert instance is stored exactly once with its true
start and end.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from alertmanager.runtime import Placement, write_placed
from compose.processes import ROOT, alertmanager_argv, free_port, spawn, stop, wait_ready
from tests.conftest import binary
from tests.integration.stack import wait_for
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


def _alert(tag: str, i: int, starts: datetime, ends: datetime | None = None) -> dict[str, object]:
    doc: dict[str, object] = {
        "labels": {
            "alertname": f"Storm{tag.title()}{i % 4}",
            "severity": "warning",
            "service": f"svc{i % 3}",
            "target": f"{tag}-{i}",
        },
        "annotations": {"summary": "storm", "description": f"alert {tag}-{i}", "value": str(i)},
        "startsAt": starts.isoformat(),
    }
    if ends is not None:
        doc["endsAt"] = ends.isoformat()
    return doc


def _stored(cluster: Cluster) -> dict[str, tuple[datetime, datetime | None]]:
    try:
        with psycopg.connect(cluster.dsn("wsinfra"), connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT alert_rule->'labels'->>'target', triggered_at, resolved_at "
                "FROM infrastructure_alerts"
            ).fetchall()
    except psycopg.OperationalError:
        return {}
    return {r[0]: (r[1], r[2]) for r in rows}


def test_alerts_survive_a_database_outage_and_a_restart_exactly_once(
    cluster: Cluster, tmp_path: Path
) -> None:
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
        f"journal:\n  directory: {tmp_path / 'journal'}\n"
    )
    subprocess.run(
        [sys.executable, "-m", "recorder", "migrate", "--config.file", str(cfg)],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    rec_port, am_port = free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "recorder",
        "serve",
        "--config.file",
        str(cfg),
        "--web.listen-address",
        f"127.0.0.1:{rec_port}",
    ]
    recorder = spawn(argv, tmp_path / "recorder.log")
    am_cfg = write_placed(
        tmp_path / "am.yml",
        Placement(
            secrets_dir=secrets,
            recorder_url=f"http://127.0.0.1:{rec_port}",
            pagerduty_url="http://127.0.0.1:9/v2/enqueue",
        ),
    )
    am = spawn(alertmanager_argv(am_cfg, am_port, tmp_path / "am-data"), tmp_path / "am.log")
    # What each alert instance must end up as: target -> (start, end or None while firing).
    want: dict[str, tuple[datetime, datetime | None]] = {}

    def fire(tag: str, n: int) -> None:
        starts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        post_alerts(am_port, [_alert(tag, i, starts) for i in range(n)])
        want.update({f"{tag}-{i}": (starts, None) for i in range(n)})

    def resolve(tag: str, indexes: range) -> None:
        ends = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        post_alerts(am_port, [_alert(tag, i, want[f"{tag}-{i}"][0], ends) for i in indexes])
        want.update({f"{tag}-{i}": (want[f"{tag}-{i}"][0], ends) for i in indexes})

    def metric(name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{rec_port}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    try:
        wait_ready(f"http://127.0.0.1:{rec_port}/-/ready", proc=recorder)
        wait_ready(f"http://127.0.0.1:{am_port}/-/ready", proc=am)
        fire("before", 40)
        wait_for("40 alerts stored", lambda: len(_stored(cluster)) == 40, 60)

        outage_started = time.monotonic()
        cluster.stop()
        fire("during", 40)
        wait_for(
            "the recorder journals while the database is down",
            lambda: metric("recorder_journal_records") >= 1,
            30,
        )
        # Fire and resolve inside the outage: Alertmanager sends these resolutions only once.
        resolve("during", range(0, 20))
        resolve("before", range(0, 20))
        wait_for(
            "firing and resolved notifications journaled",
            lambda: metric('recorder_journal_appended_total{source="alertmanager"}') >= 3,
            30,
        )
        # Killed without warning: what it acknowledged is on disk, the rest is Alertmanager's.
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=10)
        recorder = spawn(argv, tmp_path / "recorder-2.log")
        wait_ready(f"http://127.0.0.1:{rec_port}/-/healthy", proc=recorder)
        fire("late", 40)
        resolve("late", range(30, 40))
        wait_for(
            "the restarted recorder journals too",
            lambda: metric("recorder_journal_records") >= 1,
            30,
        )
        # The scenario, not a wait for a condition: the outage lasts 30 s in all.
        time.sleep(max(0.0, 30 - (time.monotonic() - outage_started)))
        cluster.start()

        wait_for(
            "every alert instance stored with its true start and end",
            lambda: _stored(cluster) == want,
            120,
        )
        with psycopg.connect(cluster.dsn("wsinfra")) as conn:
            (count,) = conn.execute("SELECT count(*) FROM infrastructure_alerts").fetchone() or (0,)
        assert count == len(want) == 120, "each instance exactly once"
        wait_for("the journal drains", lambda: metric("recorder_journal_records") == 0, 30)
        assert metric("recorder_journal_applied_total") >= 1
        assert metric('recorder_journal_dropped_total{reason="refused"}') == 0
        assert metric('recorder_journal_dropped_total{reason="unreadable"}') == 0
    finally:
        stop(am)
        stop(recorder)
