"""GET /api/infrastructure/health under 50 concurrent clients (wrk) against the DEMO stack: the
operator API (one process) against a naive handler (benchmarks/naive_health.py, one process)
that builds the same answer with one Prometheus query per figure on every request, both on the
stack's own Prometheus and database, with the same ops bearer token.

Run: WSINFRA_BENCH=1 scripts/bootstrap.sh   (wrk)
     .venv/bin/python -m benchmarks.api_health [--rounds 5] [--seconds 10]

Rounds interleave the two (benchmarks/compare.py); each round is a wrk run of --seconds with
2 threads and 50 connections. Targets (issue 12): p99 ≤ 50 ms and ≥ 5x the naive throughput.
Last line: api_health ours_rps=<median> naive_rps=<median> ratio=<median of per-round ratios>
p99_ms=<median of ours' p99>
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.compare import MIN_ROUNDS, figure, interleave, ratio
from compose.database import drop_database
from compose.processes import ROOT, free_port, python_argv, spawn, stop
from compose.stack import isolated_env

PATH = "/api/infrastructure/health"
CONNECTIONS = 50
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> tuple[float, float, int]:
    """(requests per second, p99 in ms, non-2xx count) from `wrk --latency` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if rps is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if errors:
        print(f"  wrk: {errors.group(0)}", file=sys.stderr)
    return (
        float(rps.group(1)),
        float(p99.group(1)) * _UNITS[p99.group(2)],
        int(bad.group(1)) if bad else 0,
    )


def wrk(url: str, token: str, seconds: int, *, warm_up: bool = False) -> tuple[float, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            # wrk's default 2 s would count the naive handler's slow answers as errors.
            "--timeout",
            "30s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    if warm_up:
        return 0.0, 0.0
    rps, p99, bad = parse_wrk(out)
    if rps <= 0:
        raise RuntimeError(f"no answer from {url} within wrk's run:\n{out}")
    if bad:
        raise RuntimeError(f"{bad} answers were not 2xx from {url}")
    return rps, p99


def wait_health(url: str, token: str, timeout: float = 120.0) -> None:
    """Until /health answers 200 (Prometheus has scraped, the machine user exists)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310 - loopback
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(1)
    raise RuntimeError(f"{url} never answered 200 ({last})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is missing: WSINFRA_BENCH=1 scripts/bootstrap.sh", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="wsinfra-bench-health-"))
    env, ports = isolated_env(work)

    def cli(*a: str) -> None:
        res = subprocess.run(
            [sys.executable, "-m", "compose.stack", *a],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"compose.stack {' '.join(a)} failed:\n{res.stdout}{res.stderr}")

    naive = None
    try:
        cli("up")
        token = (work / "run" / "demo" / "secrets" / "api_demo_token").read_text().strip()
        ours_url = f"http://127.0.0.1:{ports['API']}{PATH}"
        wait_health(ours_url, token)
        naive_port = free_port()
        naive = spawn(
            python_argv(
                "benchmarks.naive_health",
                "--listen",
                f"127.0.0.1:{naive_port}",
                "--prometheus",
                f"http://127.0.0.1:{ports['PROMETHEUS']}",
                "--conninfo",
                f"host=127.0.0.1 dbname={env['WSINFRA_RECORDER_DB']} user=postgres",
                "--token-file",
                str(work / "run" / "demo" / "secrets" / "api_demo_token"),
            ),
            work / "naive.log",
        )
        naive_url = f"http://127.0.0.1:{naive_port}{PATH}"
        wait_health(naive_url, token, timeout=30)
        # Warm both (connection pools, the snapshot) before measuring.
        wrk(ours_url, token, 5, warm_up=True)
        wrk(naive_url, token, 5, warm_up=True)
        p99s: list[float] = []

        def ours() -> float:
            rps, p99 = wrk(ours_url, token, args.seconds)
            p99s.append(p99)
            print(f"  ours:  {rps:8.0f} req/s  p99 {p99:6.1f} ms", file=sys.stderr)
            return rps

        def base() -> float:
            rps, p99 = wrk(naive_url, token, args.seconds)
            print(f"  naive: {rps:8.0f} req/s  p99 {p99:6.1f} ms", file=sys.stderr)
            return rps

        runs = interleave(args.rounds, {"ours": ours, "naive": base})
    finally:
        if naive is not None:
            stop(naive)
        try:
            cli("down")
        finally:
            drop_database(env["WSINFRA_RECORDER_DB"], None)
    ours_rps, naive_rps = figure(runs["ours"]), figure(runs["naive"])
    p99 = figure(p99s)
    print(f"GET {PATH}, {CONNECTIONS} connections, {args.rounds} rounds of {args.seconds} s")
    print(f"ours:  {ours_rps.show('{:.0f}')} req/s, p99 {p99.show('{:.1f}')} ms")
    print(f"naive: {naive_rps.show('{:.0f}')} req/s")
    print(f"ratio: {ratio(runs['ours'], runs['naive']).show('{:.1f}')} (target ≥ 5x; p99 ≤ 50 ms)")
    print(
        f"api_health ours_rps={ours_rps.median:.0f} naive_rps={naive_rps.median:.0f} "
        f"ratio={ratio(runs['ours'], runs['naive']).median:.1f} p99_ms={p99.median:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
