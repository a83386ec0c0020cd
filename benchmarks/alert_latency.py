"""Alert latency: time from a fault to the Slack message, our stack against the common baseline.

Run: .venv/bin/python -m benchmarks.alert_latency [--reps 5] [--flap-seconds 180]

Both stacks watch the same stand-in platform in the same run:
- ours: `python -m compose.stack up` in DEMO mode (two regional uptime exporters, our rules and
  Alertmanager routing), messages to its own sink;
- baseline, "the common way": Debian's blackbox_exporter, scrape and evaluation every 15 s, an
  alert `probe_success == 0` with `for: 1m`, Alertmanager with `group_wait: 30s` and the default
  `group_interval: 5m`, messages to a second sink.
Each repetition starts both stacks fresh and lets them settle, so every fault is a first fault:
Prometheus re-sends a resolved alert for 15 minutes and Alertmanager delays a re-fire into an
existing group until the group's next `group_interval` tick, which would measure the baseline's
5-minute group_interval rather than its detection path. In the first repetition the platform
first flaps within normal bounds (latency under the thresholds, brief error blips shorter than
a probe retry); every alert message then counts as a false alert. Then the platform goes hard
down (port closed) until both stacks have posted, and comes back until both have posted the
resolved message.
Both stacks see each fault at the same moment, so every repetition is a paired comparison; the
figures are medians over the repetitions (at least 5) with their range.
Last line: alert_latency_seconds ours=<median> baseline=<median> ratio=<ours/baseline>
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from benchmarks.compare import MIN_ROUNDS, figure
from compose.database import drop_database
from compose.processes import (
    ROOT,
    alertmanager_argv,
    find_binary,
    free_port,
    prometheus_argv,
    python_argv,
    spawn,
    stop,
    wait_ready,
)
from compose.stack import isolated_env
from fakes.platform import set_mode

BASE_HOOK = "T0BASE/B0BASE/baseline-token"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read())


class Baseline:
    """blackbox_exporter + Prometheus + Alertmanager configured the way most setups start."""

    def __init__(self, work: Path, target_url: str) -> None:
        self.work = work
        self.ports = {n: free_port() for n in ("blackbox", "prometheus", "alertmanager", "sink")}
        self.target_url = target_url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        w, p = self.work, self.ports
        (w / "blackbox.yml").write_text(
            "modules:\n  http_2xx:\n    prober: http\n    timeout: 10s\n"
        )
        (w / "slack_url").write_text(f"http://127.0.0.1:{p['sink']}/services/{BASE_HOOK}\n")
        (w / "baseline.rules.yml").write_text(
            yaml.safe_dump(
                {
                    "groups": [
                        {
                            "name": "baseline",
                            "rules": [
                                {
                                    "alert": "EndpointDown",
                                    "expr": 'probe_success{job="blackbox"} == 0',
                                    "for": "1m",
                                    "labels": {"severity": "critical"},
                                    "annotations": {"summary": "{{ $labels.instance }} is down"},
                                }
                            ],
                        }
                    ]
                }
            )
        )
        (w / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
                    "rule_files": [str(w / "baseline.rules.yml")],
                    "alerting": {
                        "alertmanagers": [
                            {"static_configs": [{"targets": [f"127.0.0.1:{p['alertmanager']}"]}]}
                        ]
                    },
                    "scrape_configs": [
                        {
                            "job_name": "blackbox",
                            "metrics_path": "/probe",
                            "params": {"module": ["http_2xx"]},
                            "static_configs": [{"targets": [self.target_url]}],
                            "relabel_configs": [
                                {
                                    "source_labels": ["__address__"],
                                    "target_label": "__param_target",
                                },
                                {"source_labels": ["__param_target"], "target_label": "instance"},
                                {
                                    "target_label": "__address__",
                                    "replacement": f"127.0.0.1:{p['blackbox']}",
                                },
                            ],
                        }
                    ],
                }
            )
        )
        (w / "alertmanager.yml").write_text(
            yaml.safe_dump(
                {
                    "route": {"receiver": "slack", "group_by": ["alertname"], "group_wait": "30s"},
                    "receivers": [
                        {
                            "name": "slack",
                            "slack_configs": [
                                {
                                    "api_url_file": str(w / "slack_url"),
                                    "channel": "#alerts",
                                    "send_resolved": True,
                                }
                            ],
                        }
                    ],
                }
            )
        )
        blackbox = find_binary("prometheus-blackbox-exporter", "blackbox_exporter")
        self._run(
            [
                blackbox,
                f"--config.file={w / 'blackbox.yml'}",
                f"--web.listen-address=127.0.0.1:{p['blackbox']}",
            ],
            "blackbox",
            f"http://127.0.0.1:{p['blackbox']}/metrics",
        )
        self._run(
            python_argv(
                "fakes.sink",
                "--listen",
                f"127.0.0.1:{p['sink']}",
                "--slack-webhook-url-file",
                f"{w / 'slack_url'}=#alerts",
            ),
            "sink",
            f"http://127.0.0.1:{p['sink']}/-/healthy",
        )
        self._run(
            alertmanager_argv(w / "alertmanager.yml", p["alertmanager"], w / "am-data"),
            "alertmanager",
            f"http://127.0.0.1:{p['alertmanager']}/-/ready",
        )
        self._run(
            prometheus_argv(w / "prometheus.yml", p["prometheus"], w / "prom-data"),
            "prometheus",
            f"http://127.0.0.1:{p['prometheus']}/-/ready",
        )

    def _run(self, argv: list[str], name: str, ready: str) -> None:
        proc = spawn(argv, self.work / f"{name}.log")
        self.procs.append(proc)
        wait_ready(ready, proc=proc)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)

    def messages(self) -> list[dict[str, Any]]:
        return list(get_json(f"http://127.0.0.1:{self.ports['sink']}/api/messages")["slack"])


class Ours:
    def __init__(self, work: Path) -> None:
        self.env, self.ports = isolated_env(work)
        self.env["WSINFRA_DEMO_TARGETS"] = "web-home"  # the one URL the baseline probes

    def cli(self, *args: str) -> None:
        res = subprocess.run(
            [sys.executable, "-m", "compose.stack", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"compose.stack {' '.join(args)} failed:\n{res.stdout}{res.stderr}")

    @property
    def control(self) -> str:
        return f"127.0.0.1:{self.ports['PLATFORM_CONTROL']}"

    @property
    def platform_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['PLATFORM']}/"

    def messages(self) -> list[dict[str, Any]]:
        return list(get_json(f"http://127.0.0.1:{self.ports['SINK']}/api/messages")["slack"])


def is_firing(stack: str, m: dict[str, Any]) -> bool:
    if stack == "ours":
        return bool(
            m["text"].startswith("[CRITICAL] UptimeTargetDown")
            and "web-home" in json.dumps(m["payload"])
        )
    return "[FIRING" in m["text"]


def is_resolved(stack: str, m: dict[str, Any]) -> bool:
    if stack == "ours":
        return bool(
            m["text"].startswith("[RESOLVED] UptimeTargetDown")
            and "web-home" in json.dumps(m["payload"])
        )
    return "[RESOLVED" in m["text"]


def wait_messages(
    sources: dict[str, Any],
    since: dict[str, int],
    pred: Any,
    started: float,
    caps: dict[str, float],
) -> dict[str, float | None]:
    found: dict[str, float | None] = {}
    while len(found) < len(sources):
        now = time.monotonic()
        for name, src in sources.items():
            if name in found:
                continue
            if any(pred(name, m) for m in src.messages()[since[name] :]):
                found[name] = now - started
            elif now - started > caps[name]:
                found[name] = None
        time.sleep(0.5)
    return found


def flap(control: str, seconds: float, rng: random.Random) -> None:
    end = time.monotonic() + seconds
    next_blip = time.monotonic() + 30
    while time.monotonic() < end:
        if time.monotonic() >= next_blip:
            # A brief error blip, shorter than the prober's confirmation delay.
            set_mode(control, "error")
            time.sleep(0.4)
            next_blip = time.monotonic() + rng.uniform(20, 40)
        if rng.random() < 0.5:
            set_mode(control, "slow", rng.uniform(0.2, 2.0))
        else:
            set_mode(control, "ok")
        time.sleep(rng.uniform(3, 8))
    set_mode(control, "ok")


def fmt(values: list[float | None]) -> str:
    return " ".join("-" if v is None else f"{v:.1f}" for v in values)


def median(values: list[float | None]) -> float:
    real = [v for v in values if v is not None]
    return statistics.median(real) if real else float("nan")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--reps", type=int, default=MIN_ROUNDS)
    ap.add_argument("--flap-seconds", type=float, default=180.0)
    ap.add_argument("--seed", type=int, default=1)
    return ap


def main() -> int:
    args = parser().parse_args()
    rng = random.Random(args.seed)
    fire: dict[str, list[float | None]] = {"ours": [], "baseline": []}
    resolve: dict[str, list[float | None]] = {"ours": [], "baseline": []}
    false_alerts = {"ours": 0, "baseline": 0}
    false_titles: dict[str, list[str]] = {"ours": [], "baseline": []}
    for rep in range(args.reps):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            ours = Ours(work)
            ours.cli("up")
            (work / "baseline").mkdir()
            base = Baseline(work / "baseline", ours.platform_url)
            try:
                base.start()
                sources: dict[str, Any] = {"ours": ours, "baseline": base}
                # Both have scraped, evaluated and found their Alertmanager before the fault.
                time.sleep(45)
                if rep == 0 and args.flap_seconds > 0:
                    before = {n: len(s.messages()) for n, s in sources.items()}
                    print(
                        f"flapping within normal bounds for {args.flap_seconds:.0f}s",
                        file=sys.stderr,
                    )
                    flap(ours.control, args.flap_seconds, rng)
                    time.sleep(75)  # anything the flapping set off has had time to arrive
                    false_alerts = {n: len(s.messages()) - before[n] for n, s in sources.items()}
                    # Name them: a false alert is only worth its count if we know which rule.
                    for n, s in sources.items():
                        for m in s.messages()[before[n] :]:
                            title = m["text"].splitlines()[0][:120]
                            false_titles[n].append(title)
                            print(f"false alert ({n}): {title}", file=sys.stderr)
                time.sleep(rng.uniform(0, 15))  # do not phase-lock the fault to scrape intervals
                since = {n: len(s.messages()) for n, s in sources.items()}
                set_mode(ours.control, "down")
                got = wait_messages(
                    sources, since, is_firing, time.monotonic(), {"ours": 120, "baseline": 300}
                )
                for n in sources:
                    fire[n].append(got[n])
                since = {n: len(s.messages()) for n, s in sources.items()}
                set_mode(ours.control, "ok")
                got = wait_messages(
                    sources, since, is_resolved, time.monotonic(), {"ours": 180, "baseline": 420}
                )
                for n in sources:
                    resolve[n].append(got[n])
                print(
                    f"rep {rep + 1}: fire ours={fire['ours'][-1]} baseline={fire['baseline'][-1]} "
                    f"resolve ours={resolve['ours'][-1]} baseline={resolve['baseline'][-1]}",
                    file=sys.stderr,
                )
            finally:
                base.stop()
                ours.cli("down")
                drop_database(ours.env["WSINFRA_RECORDER_DB"], None)
    print(f"repetitions={args.reps} flap_seconds={args.flap_seconds:g}")
    for n in ("ours", "baseline"):
        print(
            f"{n:8} fire_seconds=[{fmt(fire[n])}] resolved_seconds=[{fmt(resolve[n])}] false_alerts={false_alerts[n]}"
        )
    print(
        f"resolved_latency_seconds ours={median(resolve['ours']):.1f} baseline={median(resolve['baseline']):.1f}"
    )
    for what, values in (("fire", fire), ("resolved", resolve)):
        for n in ("ours", "baseline"):
            real = [v for v in values[n] if v is not None]
            if real:
                print(f"{what:8} {n:8} seconds {figure(real).show()}")
    print(f"false_alerts ours={false_alerts['ours']} baseline={false_alerts['baseline']}")
    for n in ("ours", "baseline"):
        for title in false_titles[n]:
            print(f"false_alert {n}: {title}")
    o, b = median(fire["ours"]), median(fire["baseline"])
    print(f"alert_latency_seconds ours={o:.1f} baseline={b:.1f} ratio={o / b:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
