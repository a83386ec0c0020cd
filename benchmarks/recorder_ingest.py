"""Recorder alert ingest: ours (one transaction per notification, pipelined executemany) against
a naive baseline (one autocommitted INSERT per alert), same HTTP app, same PostgreSQL, same run.

Run: .venv/bin/python -m benchmarks.recorder_ingest [--batches 5] [--rate 100] [--seconds 10]

1. Batch: notifications of 1,000 new alerts each; time from POST to 200 (the rows are committed
   by then). Rows per second = 1,000 / median batch time. Target: under 250 ms per batch.
2. Steady: single-alert notifications at a fixed rate; p50/p99 latency per request.
Last line: recorder_alerts_per_second ours=<n> baseline=<n> ratio=<ours/baseline>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

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


async def batches(url: str, count: int, size: int) -> list[float]:
    times = []
    async with httpx.AsyncClient(
        timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        for _ in range(count):
            body = payload(size)
            t0 = time.perf_counter()
            resp = await client.post(url, content=body)
            times.append(time.perf_counter() - t0)
            resp.raise_for_status()
            assert resp.json() == {"stored": size}
    return times


async def steady(url: str, rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(
        timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:

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
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "token").write_text(TOKEN)
        for name in ("ours", "baseline"):
            db = f"wsinfra_bench_{name}_{uuid.uuid4().hex[:6]}"
            dsn = ensure_database(db, None)
            asyncio.run(_migrate(dsn))
            port = free_port()
            if name == "ours":
                cfg = work / "recorder.yaml"
                cfg.write_text(
                    f"database:\n  conninfo: '{dsn}'\nwebhooks:\n  alertmanager_token_file: {work / 'token'}\n  max_body_bytes: 16777216\n"
                    f"journal:\n  directory: {work / 'journal'}\n"
                )
                proc = spawn(
                    python_argv(
                        "recorder",
                        "serve",
                        "--config.file",
                        str(cfg),
                        "--web.listen-address",
                        f"127.0.0.1:{port}",
                        "--log.level",
                        "warning",
                    ),
                    work / f"{name}.log",
                )
            else:
                proc = spawn(
                    python_argv("benchmarks.naive_recorder", dsn, str(port), TOKEN),
                    work / f"{name}.log",
                )
            try:
                wait_ready(f"http://127.0.0.1:{port}/-/healthy", proc=proc)
                url = f"http://127.0.0.1:{port}/webhooks/alertmanager"
                asyncio.run(batches(url, 1, args.size))  # warm-up: connections, prepared statements
                b = asyncio.run(batches(url, args.batches, args.size))
                s = asyncio.run(steady(url, args.rate, args.seconds))
                with psycopg.connect(dsn) as conn:
                    row = conn.execute("SELECT count(*) FROM infrastructure_alerts").fetchone()
                expected = (args.batches + 1) * args.size + len(s)
                stored = row[0] if row else 0
                if stored != expected:
                    raise SystemExit(f"{name}: {stored} rows stored, expected {expected}")
                results[name] = (b, s)
            finally:
                stop(proc)
                drop_database(db, None)
    print(
        f"batch of {args.size} alerts, {args.batches} batches; steady {args.rate:g}/s single-alert notifications for {args.seconds:g}s"
    )
    for name, (b, s) in results.items():
        med = statistics.median(b)
        print(
            f"{name:8} batch_ms median={med * 1000:.0f} max={max(b) * 1000:.0f} rows_per_second={args.size / med:.0f} "
            f"single_ms p50={pct(s, 0.5) * 1000:.1f} p99={pct(s, 0.99) * 1000:.1f}"
        )
    ours = args.size / statistics.median(results["ours"][0])
    base = args.size / statistics.median(results["baseline"][0])
    print(f"recorder_alerts_per_second ours={ours:.0f} baseline={base:.0f} ratio={ours / base:.2f}")
    return 0


async def _migrate(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await migrate.apply(conn)


if __name__ == "__main__":
    sys.exit(main())
