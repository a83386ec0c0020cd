"""Vercel drain ingest: log records per CPU-second through signature check, framing, parsing and
aggregation (everything a delivery costs after the socket), for 1,000-record JSON and NDJSON
batches. Compared with the issue's target (50,000 records per CPU-second) and, as a reference,
with the obvious alternative: the same parse, then prometheus_client's Counter.labels().inc()
per record.

Ours and the reference run in turns over `--rounds` rounds (at least 5); each figure is the
median with its range.

Run: .venv/bin/python -m benchmarks.vercel_drain_ingest [--batches 60] [--rounds 5]
Last line: drain_records_per_cpu_second json=<n> ndjson=<n>
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from benchmarks.compare import figure, interleave, ratio
from common.config import load_config
from exporters.vercel import labels as L
from exporters.vercel.config import VercelConfig, read_secrets
from exporters.vercel.drain_body import open_body, records
from exporters.vercel.drains import DrainReceiver
from fakes.vercel_drains import encode, log_records, sign
from fakes.vercel_setup import PROJECT_ID, SECRETS, write_config

TARGET = 50_000
BATCH = 1_000


def _load(path: Path) -> tuple[VercelConfig, dict[str, str]]:
    cfg = load_config(path, VercelConfig)
    return cfg, read_secrets(cfg, path)


def batches(n: int, fmt: str) -> list[tuple[bytes, str]]:
    out = []
    for i in range(n):
        body = encode(
            log_records(BATCH, PROJECT_ID, seed=1000 + i, now_ms=1_780_000_000_000 + i), fmt
        )
        out.append((body, sign(SECRETS["logs"], body)))
    return out


def ours(work: list[tuple[bytes, str]], tmp: Path) -> float:
    cfg, secrets = _load(write_config(tmp, token=False))
    receiver = DrainReceiver(cfg, secrets)
    start = time.process_time()
    for body, sig in work:
        receiver._process("logs", body, {"signature": sig, "content_type": "application/json"})
    cpu = time.process_time() - start
    assert receiver.logs.requests.collect().samples  # something was counted
    return len(work) * BATCH / cpu


def per_record_counter(work: list[tuple[bytes, str]]) -> float:
    """The same check and parse, then one labelled Counter increment per record."""
    registry = CollectorRegistry()
    c = Counter(
        "vercel_requests",
        "x",
        ["project", "environment", "region", "status_class", "cache", "path_type"],
        registry=registry,
    )
    projects = L.Projects({PROJECT_ID: "web"})
    secret = SECRETS["logs"].encode()
    start = time.process_time()
    for body, sig in work:
        for rec in records(open_body(body, secret, sig, 64 << 20)):
            p = rec.get("proxy") or {}
            c.labels(
                projects(rec.get("projectId")),
                L.environment(rec.get("environment")),
                L.region(p.get("region")),
                L.status_class(p.get("statusCode")),
                L.one_of(p.get("vercelCache"), L.CACHE),
                L.one_of(p.get("pathType"), L.PATH_TYPES),
            ).inc()
    return len(work) * BATCH / (time.process_time() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.vercel_drain_ingest")
    ap.add_argument(
        "--batches", type=int, default=60, help="distinct 1,000-record batches per format"
    )
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("json", "ndjson"):
            work = batches(args.batches, fmt)
            size = sum(len(b) for b, _ in work) / len(work)
            rates = interleave(
                args.rounds,
                {
                    "ours": functools.partial(ours, work, Path(tmp) / fmt),
                    "counter": functools.partial(per_record_counter, work),
                },
            )
            r_ours, r_naive = figure(rates["ours"]), figure(rates["counter"])
            per_round = ratio(rates["ours"], rates["counter"])
            results[fmt] = r_ours.median
            print(
                f"{fmt:6} batch {size / 1024:.0f} KiB, {args.rounds} rounds: ours "
                f"{r_ours.show('{:,.0f}')} records/CPU-s "
                f"(target {TARGET:,}: {'met' if r_ours.median >= TARGET else 'MISSED'}); "
                f"per-record Counter.inc {r_naive.show('{:,.0f}')} (ours/that {per_round.show('{:.2f}')})"
            )
    print(f"drain_records_per_cpu_second json={results['json']:.0f} ndjson={results['ndjson']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
