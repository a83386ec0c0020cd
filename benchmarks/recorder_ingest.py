"""Recorder alert ingest: ours (one transaction per notification, pipelined executemany) against
a naive baseline (one autocommitted INSERT per alert), same HTTP app, same PostgreSQL, same run.

Run: .venv/bin/python -m benchmarks.recorder_ingest [--rounds 9] [--rate 100] [--seconds 10]

1. Batch: notifications of 1,000 new alerts each; time from POST to 200 (the rows are committed
   by then). Both servers run side by side and take turns, one batch each per round; the figures
   are medians over the rounds with their range. Target: ours at least 5x the baseline's rows/s,
   and under 250 ms per batch.
2. Steady: single-alert notifications at a fixed rate; p50/p99 latency per request.
Last line: recorder_alerts_per_second ours=<n> baseline=<n> ratio=<median per-round ratio>
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

from benchmarks.compare import figure, interleave, ratio
from compose.database import drop_database, ensure_database
from compose.processes import free_port, python_argv, spawn, stop, wait_ready
from schema import migrate

TOKEN = "bench-token"  # noqa: S105 - a loopback benchmark token


def payload(n: int) -> bytes:
    run = uuid.uuid4().hex[:8]
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": "BenchAlert",
                "severity": "warning",
                "service": f"svc{i % 10}",
                "target": f"t{i}",
                "region": "us-east",
            },
            "annotations": {
                "summary": "bench",
                "description": f"alert {i}",
                "value": str(i),
                "threshold": "1",
            },
            "startsAt": "2026-11-25T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": f"{run}{i:08x}",
        }
        for i in range(n)
    ]
    return json.dumps(
        {
            "version": "4",
            "groupKey": "bench",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "recorder",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "",
            "alerts": alerts,
        }
    ).encode()


HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def one_batch(url: str, size: int) -> float:
    """Seconds from POST to 200 for one notification of `size` new alerts."""
    body = payload(size)
    with httpx.Client(timeout=60, headers=HEADERS) as client:
        t0 = time.perf_counter()
        resp = client.post(url, content=body)
        took = time.perf_counter() - t0
    resp.raise_for_status()
    if resp.json().get("stored") != size:
        raise SystemExit(f"{url}: {resp.json()}")
    return took


async def steady(url: str, rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=30, headers=HEADERS) as client:

        async def one() -> None:
            body = payload(1)
            t0 = time.perf_counter()
            resp = await client.post(url, content=body)
            latencies.append(time.perf_counter() - t0)
            resp.raise_for_status()

        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "token").write_text(TOKEN)
        servers: dict[str, tuple[str, str, subprocess.Popen[bytes]]] = {}
        try:
            for name in ("ours", "baseline"):
                db = f"wsinfra_bench_{name}_{uuid.uuid4().hex[:6]}"
                dsn = ensure_database(db, None)
                asyncio.run(_migrate(dsn))
                port = free_port()
                servers[name] = (db, dsn, spawn(_argv(name, dsn, port, work), work / f"{name}.log"))
                wait_ready(f"http://127.0.0.1:{port}/-/healthy", proc=servers[name][2])
                url = f"http://127.0.0.1:{port}/webhooks/alertmanager"
                one_batch(url, args.size)  # warm-up: connections, prepared statements
                urls[name] = url
            times = interleave(
                args.rounds,
                {n: functools.partial(one_batch, u, args.size) for n, u in urls.items()},
            )
            steady_lat = {
                n: asyncio.run(steady(u, args.rate, args.seconds)) for n, u in urls.items()
            }
            for name, (_, dsn, _) in servers.items():
                with psycopg.connect(dsn) as conn:
                    row = conn.execute("SELECT count(*) FROM infrastructure_alerts").fetchone()
                expected = (args.rounds + 1) * args.size + len(steady_lat[name])
                if (row[0] if row else 0) != expected:
                    raise SystemExit(f"{name}: {row} rows stored, expected {expected}")
        finally:
            for db, _, proc in servers.values():
                stop(proc)
                drop_database(db, None)
    print(
        f"batch of {args.size} alerts, {args.rounds} interleaved rounds; "
        f"steady {args.rate:g}/s single-alert notifications for {args.seconds:g}s"
    )
    for name in ("ours", "baseline"):
        b, s = figure(times[name]), steady_lat[name]
        print(
            f"{name:8} batch_ms {figure([t * 1000 for t in times[name]]).show('{:.0f}')} "
            f"rows_per_second={args.size / b.median:.0f} "
            f"single_ms p50={pct(s, 0.5) * 1000:.1f} p99={pct(s, 0.99) * 1000:.1f}"
        )
    r = ratio(times["ours"], times["baseline"], higher_is_better=False)
    print(f"per-round ratio {r.show('{:.2f}')}  (target >= 5)")
    ours = args.size / figure(times["ours"]).median
    base = args.size / figure(times["baseline"]).median
    print(f"recorder_alerts_per_second ours={ours:.0f} baseline={base:.0f} ratio={r.median:.2f}")
    return 0


urls: dict[str, str] = {}


def _argv(name: str, dsn: str, port: int, work: Path) -> list[str]:
    if name == "baseline":
        return python_argv("benchmarks.naive_recorder", dsn, str(port), TOKEN)
    cfg = work / "recorder.yaml"
    cfg.write_text(
        f"database:\n  conninfo: '{dsn}'\nwebhooks:\n  alertmanager_token_file: {work / 'token'}\n"
        f"  max_body_bytes: 16777216\njournal:\n  directory: {work / 'journal'}\n"
    )
    return python_argv(
        "recorder",
        "serve",
        "--config.file",
        str(cfg),
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--log.level",
        "warning",
    )


async def _migrate(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await migrate.apply(conn)


if __name__ == "__main__":
    sys.exit(main())
