"""compose/compose.yaml run for real, under Podman: the DEMO profile started from images built
here from Debian's packages (compose/podman/), every healthcheck waited for, then the alert path
proved inside the containers: a demo fault reaches the sink as a critical message whose runbook
link opens, recovery sends the resolved message, the PostgreSQL container's recorder database
holds the alert row, every exporter's /metrics answers on its published port and Prometheus
scrapes every job, and the backup worker's first restore drill of the stack's database (a dump
restored into a private cluster the worker creates inside its container) passes. Then `down -v`
leaves no container, volume or network behind.

Grafana is not packaged by Debian, so it is not started here (its provisioning is checked
statically in tests/unit/test_compose.py). Podman runs healthchecks from systemd timers, which a
container host without systemd lacks, and podman 4.3 ignores `condition: service_healthy`: the
test runs each container's healthcheck itself (`podman healthcheck run`) until all pass, and the
services ride out the order they start in by retrying (restart: unless-stopped).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from fakes.platform import set_mode
from tests.conftest import binary
from tests.integration.stack import get_json, repository_copy, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = "wsinfra-ci"  # not the users' "wsinfra": their volumes are never touched
PODMAN_COMPOSE = Path(sys.executable).with_name("podman-compose")
# Every exporter and the recorder, on the ports compose.yaml publishes.
METRICS = {
    "uptime-us-east": (19701, "uptime_up"),
    "uptime-eu-west": (19702, "uptime_up"),
    "vercel": (19703, "vercel_up"),
    "supabase": (19704, "supabase_up"),
    "billing": (19705, "billing_up"),
    "recorder": (19700, "recorder_up"),
    "api": (19706, "api_up"),
    "backups": (19707, "backup_up"),
}


class Compose:
    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.files = [
            "compose/compose.yaml",
            "compose/compose.demo.yaml",
            "compose/podman/compose.podman.yaml",
        ]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        argv = [str(PODMAN_COMPOSE), "-p", PROJECT]
        for f in self.files:
            argv += ["-f", f]
        return subprocess.run(
            [*argv, "--profile", "demo", *args],
            cwd=self.repo,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def services(self) -> list[str]:
        doc = yaml.safe_load((self.repo / "compose" / "compose.yaml").read_text())
        return [name for name in doc["services"] if name != "grafana"]


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=False)


def leftovers() -> dict[str, list[str]]:
    label = f"label=io.podman.compose.project={PROJECT}"
    containers = podman("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout.split()
    volumes = [
        v
        for v in podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
        if v.startswith(f"{PROJECT}_")
    ]
    networks = [
        n
        for n in podman("network", "ls", "--format", "{{.Name}}").stdout.split()
        if n.startswith(f"{PROJECT}_")
    ]
    return {"containers": containers, "volumes": volumes, "networks": networks}


def query(expr: str) -> list[dict[str, Any]]:
    """An instant query's result vector from compose's Prometheus."""
    url = "http://127.0.0.1:19090/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return list(get_json(url)["data"]["result"])


def all_healthy(names: list[str]) -> list[str] | None:
    sick = [n for n in names if podman("healthcheck", "run", n).returncode != 0]
    return None if sick else names


@pytest.fixture
def compose(tmp_path: Path) -> Iterator[Compose]:
    binary("podman")
    if not PODMAN_COMPOSE.exists():
        pytest.skip("podman-compose not installed (scripts/bootstrap.sh installs it)")
    repo = repository_copy(tmp_path / "wsinfra")
    for example in (repo / "compose" / "secrets").glob("*.example"):  # the README's demo values
        example.with_suffix("").write_bytes(example.read_bytes())
    started = time.monotonic()
    build = subprocess.run(
        [sys.executable, "-m", "compose.podman_images", "build", "--context", str(repo)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    print(f"\nimages: {time.monotonic() - started:.0f}s\n{build.stdout}")
    c = Compose(repo)
    c.run("down", "-v")  # a run that died halfway must not leave its containers in the way
    try:
        yield c
    finally:
        down = c.run("down", "-v")
        assert down.returncode == 0, down.stderr[-2000:]
        assert leftovers() == {"containers": [], "volumes": [], "networks": []}


def test_compose_demo_runs_healthy_and_pages_inside_containers(compose: Compose) -> None:
    started = time.monotonic()
    up = compose.run("up", "-d", "--no-build", *compose.services())
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
    names = leftovers()["containers"]
    assert len(names) == len(compose.services()), names
    try:
        wait_for("every healthcheck", lambda: all_healthy(names), timeout=240, every=2)
    except AssertionError:
        logs = {n: podman("logs", "--tail", "20", n).stderr[-1500:] for n in names}
        raise AssertionError(json.dumps(logs, indent=1)) from None

    # Every exporter answers through its published port; Prometheus scrapes every job.
    for name, (port, up_metric) in METRICS.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert f"\n{up_metric}" in resp.read().decode(), name

    last: dict[str, str] = {}

    def scraped() -> dict[str, str] | None:
        targets = get_json("http://127.0.0.1:19090/api/v1/targets")["data"]["activeTargets"]
        last.clear()
        last.update({t["scrapeUrl"]: f"{t['health']} {t['lastError']}" for t in targets})
        return last if last and all(v.startswith("up") for v in last.values()) else None

    try:
        # Services started before their dependencies restart until those answer (podman's
        # restart back-off), and Prometheus scrapes every 15 s: allow for both.
        wait_for("every scrape job up", scraped, timeout=180, every=2)
    except AssertionError:
        raise AssertionError(json.dumps(last, indent=1)) from None
    assert query('up{job="backups"} == 1'), "the backup worker is not scraped"

    def messages() -> list[dict[str, Any]]:
        return list(get_json("http://127.0.0.1:19790/api/messages")["slack"])

    # A fault: the demo platform's port closes; the critical message reaches the sink.
    set_mode("127.0.0.1:19781", "down", 0)
    fault_at = time.monotonic()
    critical = wait_for(
        "the critical message",
        lambda: [m for m in messages() if m["text"].startswith("[CRITICAL] UptimeTargetDown")],
        timeout=120,
    )
    text = critical[0]["text"]
    assert critical[0]["channel"] == "#ops-alerts"
    link = next(w for w in text.split() if "/runbooks/UptimeTargetDown.md#" in w)
    page, _, anchor = link.partition("#")
    with urllib.request.urlopen(page, timeout=5) as resp:  # noqa: S310 - the recorder's port
        assert f'<h1 id="{anchor}">UptimeTargetDown</h1>' in resp.read().decode()
    pages = get_json("http://127.0.0.1:19790/api/messages")["pagerduty"]
    assert any(e["event"]["event_action"] == "trigger" for e in pages), "the demo pages the sink"
    print(f"critical after {time.monotonic() - fault_at:.0f}s")

    # Recovery: the resolved message.
    set_mode("127.0.0.1:19781", "ok", 0)
    wait_for(
        "the resolved message",
        lambda: [m for m in messages() if m["text"].startswith("[RESOLVED] UptimeTargetDown")],
        timeout=120,
    )

    # The recorder's database, in the PostgreSQL container, holds the alert.
    password = (compose.repo / "compose" / "secrets" / "postgres_password").read_text().strip()

    def recorded() -> list[tuple[Any, ...]]:
        with psycopg.connect(
            host="127.0.0.1", port=15432, user="postgres", password=password, dbname="wsinfra"
        ) as conn:
            return conn.execute(
                "SELECT severity, resolved_at IS NOT NULL FROM infrastructure_alerts "
                "WHERE alert_type = 'UptimeTargetDown'"
            ).fetchall()

    rows = wait_for("the alert rows, resolved", lambda: [r for r in recorded() if r[1]], timeout=60)
    assert {r[0] for r in rows} == {"critical"}

    # The backup worker dumps the database and restore-drills the dump as soon as it starts
    # (every 5 minutes after): the first drill passes, as Prometheus sees it.
    drill = 'backup_drill_last_passed{target="wsinfra",type="restore"} == 1'
    try:
        wait_for("a passed restore drill", lambda: query(drill), timeout=240, every=2)
    except AssertionError:
        with psycopg.connect(
            host="127.0.0.1", port=15432, user="postgres", password=password, dbname="wsinfra"
        ) as conn:
            drills = conn.execute(
                "SELECT status, error_message, checks::text FROM restore_drills"
            ).fetchall()
            backups = conn.execute(
                "SELECT status, backup_location FROM backup_status WHERE backup_target = 'wsinfra'"
            ).fetchall()
        worker = podman("logs", "--tail", "20", next(n for n in names if "backups" in n))
        raise AssertionError(
            json.dumps({"drills": drills, "backups": backups}, default=str, indent=1)
            + (worker.stdout + worker.stderr)[-3000:]
        ) from None
    (passed,) = query(drill)
    rto = query('backup_drill_rto_seconds{target="wsinfra",type="restore"}')
    print(f"drill passed, RTO {float(rto[0]['value'][1]):.1f}s; {passed['metric']}")
    print(f"compose test body: {time.monotonic() - started:.0f}s")
