"""Probes per CPU-second: our uptime exporter against Debian's blackbox_exporter, same 1,000 targets.

Run: .venv/bin/python -m benchmarks.probe_throughput [--targets 1000] [--seconds 8] [--rounds 5]

Both probers open a fresh connection per probe to the same local static target. Only the
prober's own CPU time (utime + stime from /proc) is counted, over the same measuring window:
blackbox_exporter is driven by wrk cycling through the targets on /probe; our exporter schedules
its own probes. The count of probes is what each reports having done in that window (wrk's
completed requests for blackbox, the increase of uptime_probes_total for ours).
The two run in turns, one window each per round (a slow moment of the machine hits both), and
the figures are medians over the rounds with their range.
Last line: probes_per_cpu_second ours=<n> baseline=<n> ratio=<median per-round ratio>
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.compare import figure, interleave, ratio
from benchmarks.procstat import cpu_seconds, rss_bytes
from compose.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def probes_done(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    return sum(
        float(m.group(1)) for m in re.finditer(r"^uptime_probes_total\{[^}]*\} (\S+)$", text, re.M)
    )


def run_ours(target_port: int, n: int, seconds: float, work: Path) -> tuple[float, float, int]:
    port = free_port()
    cfg = work / "uptime.yaml"
    lines = [
        "interval: 500ms",
        "timeout: 400ms",
        "concurrency: 128",
        "confirm_attempts: 1",
        "targets:",
    ]
    lines += [
        f"  - name: t{i}\n    http: {{url: 'http://127.0.0.1:{target_port}/t/{i}'}}"
        for i in range(n)
    ]
    cfg.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "exporters.uptime",
            "--config.file",
            str(cfg),
            "--web.listen-address",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_http(url)
        time.sleep(3)  # warm up: every target probed a few times
        p0, c0 = probes_done(url), cpu_seconds(proc.pid)
        time.sleep(seconds)
        p1, c1 = probes_done(url), cpu_seconds(proc.pid)
        return p1 - p0, c1 - c0, rss_bytes(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


WRK_LUA = """
local i = 0
local n = %d
request = function()
  i = (i + 1) %% n
  return wrk.format("GET", "/probe?module=http_2xx&target=http://127.0.0.1:%d/t/" .. i)
end
"""


def run_blackbox(target_port: int, n: int, seconds: float, work: Path) -> tuple[float, float, int]:
    binary = shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")
    wrk = shutil.which("wrk")
    if not binary or not wrk:
        raise SystemExit(
            "needs Debian's prometheus-blackbox-exporter and wrk (apt-get install them)"
        )
    port = free_port()
    (work / "blackbox.yml").write_text(
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n"
        "      preferred_ip_protocol: ip4\n      valid_status_codes: [200]\n"
    )
    (work / "probe.lua").write_text(WRK_LUA % (n, target_port))
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'blackbox.yml'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics")
        # Warm-up run, then the measured one.
        subprocess.run(
            [wrk, "-t1", "-c32", "-d3s", "-s", str(work / "probe.lua"), f"http://127.0.0.1:{port}"],
            capture_output=True,
            check=True,
        )
        c0 = cpu_seconds(proc.pid)
        out = subprocess.run(
            [
                wrk,
                "-t1",
                "-c32",
                f"-d{int(seconds)}s",
                "-s",
                str(work / "probe.lua"),
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        c1 = cpu_seconds(proc.pid)
        m = re.search(r"(\d+) requests in", out)
        if not m:
            raise RuntimeError(f"cannot read wrk output:\n{out}")
        requests = float(m.group(1))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if bad:
            requests -= float(bad.group(1))
        return requests, c1 - c0, rss_bytes(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    target_port = free_port()
    target = subprocess.Popen(
        [PY, "-m", "benchmarks.static_target", str(target_port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    runs: dict[str, list[tuple[float, float, int]]] = {"ours": [], "baseline": []}
    try:
        assert target.stdout is not None
        target.stdout.readline()
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)

            def ours() -> float:
                r = run_ours(target_port, args.targets, args.seconds, work)
                runs["ours"].append(r)
                return r[0] / r[1] if r[1] else float("nan")

            def baseline() -> float:
                r = run_blackbox(target_port, args.targets, args.seconds, work)
                runs["baseline"].append(r)
                return r[0] / r[1] if r[1] else float("nan")

            rates = interleave(args.rounds, {"ours": ours, "baseline": baseline})
    finally:
        target.terminate()
        target.wait(10)
    print(
        f"targets={args.targets} window_seconds={args.seconds:g} rounds={args.rounds} cpus={os.cpu_count()}"
    )
    for name, label in (("ours", "ours:    "), ("baseline", "baseline:")):
        probes = figure([r[0] / args.seconds for r in runs[name]])
        rss = max(r[2] for r in runs[name])
        print(
            f"{label} probes_per_cpu_second {figure(rates[name]).show('{:.0f}')} "
            f"probes_per_second={probes.median:.0f} rss_mib={rss / 2**20:.1f}"
            + (" (blackbox_exporter)" if name == "baseline" else "")
        )
    r = ratio(rates["ours"], rates["baseline"])
    print(f"per-round ratio {r.show('{:.2f}')}")
    print(
        f"probes_per_cpu_second ours={figure(rates['ours']).median:.0f} "
        f"baseline={figure(rates['baseline']).median:.0f} ratio={r.median:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
