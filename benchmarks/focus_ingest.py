"""FOCUS ingest: rows per second and peak memory reading a generated FOCUS CSV export of
1,000,000 rows (and of a tenth of that, to show memory flat in the file size), through the same
path the folder source uses: stream, validate every row, sum Decimals by day and key.

Baseline (same run): the obvious script, which loads the file at once (list(csv.DictReader))
and sums floats by provider, with no validation. Each ingest runs in its own process, so the
peak RSS is that ingest's alone.

The big file is read by ours and the baseline in turns, `--rounds` times (at least 5): the rate
is the median over the rounds, printed with its range.

Run: .venv/bin/python -m benchmarks.focus_ingest [--rows 1000000] [--rounds 5]
Last line: focus_rows_per_second=<n> peak_rss_mb=<n>
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.compare import figure, interleave

TARGET = 100_000
SERVICES = [
    ("Amazon Elastic Compute Cloud", "Compute", "Hours"),
    ("Amazon Simple Storage Service", "Storage", "GB-Mo"),
    ("Amazon Relational Database Service", "Databases", "Hours"),
    ("Amazon CloudFront", "Networking", "GB"),
    ("AWS Lambda", "Compute", "Requests"),
    ("Amazon Bedrock", "AI and Machine Learning", "Tokens"),
]


def generate(path: Path, rows: int) -> None:
    """An hourly, resource-level export over one month: the shape of AWS's FOCUS 1.x export."""
    # Imported here: the measuring child processes should not carry the fake's aiohttp.
    from fakes.billing_api import FOCUS_CSV_COLUMNS

    columns = (*FOCUS_CSV_COLUMNS[:-1], "RegionId", "Tags")
    rnd = random.Random(42)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for i in range(rows):
            t = start + timedelta(hours=(i * 744) // rows)
            name, cat, unit = SERVICES[i % len(SERVICES)]
            cost = f"{rnd.random() * 2:.6f}"
            charge = "Credit" if i % 97 == 0 else "Usage"
            w.writerow(
                (
                    f"-{cost}" if charge == "Credit" else cost,
                    cost,
                    cost,
                    cost,
                    "USD",
                    "2026-10-01T00:00:00Z",
                    "2026-11-01T00:00:00Z",
                    t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    (t + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    charge,
                    "",
                    name,
                    cat,
                    "AWS",
                    f"{rnd.random() * 100:.3f}",
                    unit,
                    "1",
                    unit,
                    "us-east-1",
                    json.dumps({"Environment": "production" if i % 3 else "preview"}),
                )
            )


def ingest_ours(path: Path) -> dict[str, float]:
    from exporters.billing.config import FocusFolder
    from exporters.billing.sources import FolderSource

    src = FolderSource(FocusFolder(name="bench", path=path.parent), "USD", "Environment")
    start = time.perf_counter()
    d = src.scan()
    seconds = time.perf_counter() - start
    total = sum(t.billed for keys in d.batch.days.values() for t in keys.values())
    return {"rows": d.batch.rows, "seconds": seconds, "total": float(total)}


def ingest_naive(path: Path) -> dict[str, float]:
    start = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by: dict[str, float] = {}
    for r in rows:
        by[r["ServiceProviderName"]] = by.get(r["ServiceProviderName"], 0.0) + float(
            r["BilledCost"]
        )
    seconds = time.perf_counter() - start
    return {"rows": len(rows), "seconds": seconds, "total": sum(by.values())}


def child(kind: str, path: str) -> None:
    result = (ingest_ours if kind == "ours" else ingest_naive)(Path(path))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run(kind: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.focus_ingest", "--child", kind, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.focus_ingest")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for rows in (args.rows // 10, args.rows):
            d = Path(tmp) / str(rows)
            d.mkdir()
            paths[rows] = d / "focus.csv"
            generate(paths[rows], rows)
        small = run("ours", paths[args.rows // 10])
        assert small["rows"] == args.rows // 10, small
        big: dict[str, list[dict[str, float]]] = {"ours": [], "naive": []}

        def once(kind: str) -> float:
            got = run(kind, paths[args.rows])
            big[kind].append(got)
            return float(args.rows / got["seconds"])

        rates = interleave(
            args.rounds, {"ours": lambda: once("ours"), "naive": lambda: once("naive")}
        )
        size = paths[args.rows].stat().st_size / 1e6
    for ours, naive in zip(big["ours"], big["naive"], strict=True):
        assert ours["rows"] == args.rows, ours
        # Same money (ours in Decimal, the baseline in float): the sums agree to a cent.
        assert abs(ours["total"] - naive["total"]) < 0.01, (ours["total"], naive["total"])
    peak = max(r["peak_rss_mb"] for r in big["ours"])
    rate = figure(rates["ours"])
    print(
        f"{args.rows:,} rows ({size:,.0f} MB), {args.rounds} interleaved rounds:\n"
        f"  ours      {rate.show('{:,.0f}')} rows/s, peak RSS {peak:.0f} MB\n"
        f"  load-all  {figure(rates['naive']).show('{:,.0f}')} rows/s, "
        f"peak RSS {max(r['peak_rss_mb'] for r in big['naive']):.0f} MB"
    )
    print(
        f"target >= {TARGET:,} rows/s: {'met' if rate.median >= TARGET else 'MISSED'}; "
        f"memory 10x the rows: {small['peak_rss_mb']:.0f} -> {peak:.0f} MB "
        f"({'flat' if peak < small['peak_rss_mb'] * 1.2 else 'GROWS'})"
    )
    print(f"focus_rows_per_second={rate.median:.0f} peak_rss_mb={peak:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
