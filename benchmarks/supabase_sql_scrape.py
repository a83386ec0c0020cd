"""Scrape cost of the Supabase exporter's SQL collectors against Debian's postgres_exporter
(0.11, default queries), on the same database, same run.

The database: a throwaway PostgreSQL with pg_stat_statements preloaded, 1,000 tables and
5,000 distinct statements recorded. Both exporters run as processes and are scraped over HTTP
in alternation; per scrape we take the wall time of the HTTP request and the CPU time the
PostgreSQL server's processes spent (postmaster and all backends, from /proc). Ours exports
more (top statements with their text, tables and predicate columns, missing-index suspects,
wraparound, active users) than postgres_exporter's defaults.

Run: .venv/bin/python -m benchmarks.supabase_sql_scrape [--scrapes 20]
     (needs prometheus-postgres-exporter: WSINFRA_BENCH=1 scripts/bootstrap.sh installs it)
Last line: supabase_sql_scrape_seconds ours=<median> baseline=<median> ratio=<ours/baseline>
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
import yaml
from psycopg import sql

from compose.pg_cluster import Cluster, throwaway_cluster
from compose.processes import free_port, spawn, stop, wait_ready

TABLES = 1000
STATEMENTS = 5000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def server_cpu(cluster: Cluster) -> float:
    """CPU seconds used so far by the cluster's postmaster and every process it started."""
    pid = int((cluster.dir / "postmaster.pid").read_text().split()[0])
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:  # ppid
                pids.append(int(entry.name))
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK_TCK


def populate(cluster: Cluster) -> None:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        names = [sql.Identifier(f"t{i:04d}") for i in range(TABLES)]
        for t in names:
            conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, a int, b text)").format(t))
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} SELECT g, g % 10, 'x' FROM generate_series(1, 20) g"
                ).format(t)
            )
        conn.execute("ANALYZE")
        shapes = (
            "SELECT * FROM {t} WHERE a = 1",
            "SELECT count(*) FROM {t} WHERE b = 'x'",
            "SELECT id FROM {t} WHERE id > 3 ORDER BY id",
            "UPDATE {t} SET b = 'y' WHERE id = 1",
            "SELECT max(a) FROM {t}",
        )
        for shape in shapes:
            for t in names:
                conn.execute(sql.SQL(shape).format(t=t))
        got = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()
        assert got is not None
        assert got[0] >= STATEMENTS, got


def scrape(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - loopback
        body = resp.read()
    return time.perf_counter() - t0, body.count(b"\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.supabase_sql_scrape")
    ap.add_argument("--scrapes", type=int, default=20)
    args = ap.parse_args(argv)
    baseline_bin = shutil.which("prometheus-postgres-exporter") or shutil.which("postgres_exporter")
    if baseline_bin is None:
        print(
            "prometheus-postgres-exporter is not installed (WSINFRA_BENCH=1 scripts/bootstrap.sh)",
            file=sys.stderr,
        )
        return 2
    settings = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.max": "10000"}
    with throwaway_cluster(settings) as cluster, tempfile.TemporaryDirectory() as tmp:
        populate(cluster)
        cfg = Path(tmp) / "supabase.yaml"
        cfg.write_text(
            yaml.safe_dump({"databases": [{"name": "bench", "conninfo": cluster.dsn()}]})
        )
        ours_port, base_port = free_port(), free_port()
        ours = spawn(
            [
                sys.executable,
                "-m",
                "exporters.supabase",
                "--config.file",
                str(cfg),
                "--web.listen-address",
                f"127.0.0.1:{ours_port}",
                "--log.level",
                "error",
            ],
            Path(tmp) / "ours.log",
        )
        env = {
            **os.environ,
            "DATA_SOURCE_NAME": f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres?sslmode=disable",
        }
        base = subprocess.Popen(
            [baseline_bin, f"--web.listen-address=127.0.0.1:{base_port}", "--log.level=error"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(f"http://127.0.0.1:{ours_port}/-/ready", timeout=30, proc=ours)
            wait_ready(f"http://127.0.0.1:{base_port}/metrics", timeout=30, proc=base)
            urls = {
                "ours": f"http://127.0.0.1:{ours_port}/metrics",
                "baseline": f"http://127.0.0.1:{base_port}/metrics",
            }
            for url in urls.values():  # warm-up: connections, caches
                scrape(url)
            wall: dict[str, list[float]] = {k: [] for k in urls}
            cpu: dict[str, list[float]] = {k: [] for k in urls}
            lines: dict[str, int] = {}
            for _ in range(args.scrapes):
                for name, url in urls.items():
                    c0 = server_cpu(cluster)
                    seconds, lines[name] = scrape(url)
                    cpu[name].append(server_cpu(cluster) - c0)
                    wall[name].append(seconds)
        finally:
            stop(ours)
            base.terminate()
            base.wait(timeout=10)
    med = {k: statistics.median(v) for k, v in wall.items()}
    cpu_mean = {k: statistics.fmean(v) for k, v in cpu.items()}
    print(
        f"database: {TABLES} tables, {STATEMENTS} distinct statements in pg_stat_statements; {args.scrapes} scrapes each, alternating"
    )
    for k in urls:
        print(
            f"{k:8} wall median {med[k] * 1000:7.1f} ms  (p90 {sorted(wall[k])[int(0.9 * len(wall[k])) - 1] * 1000:.1f} ms)  database CPU {cpu_mean[k] * 1000:6.1f} ms/scrape  {lines[k]} lines"
        )
    ratio = med["ours"] / med["baseline"]
    print(
        f"ours/baseline: wall {ratio:.2f}, database CPU {cpu_mean['ours'] / max(cpu_mean['baseline'], 1e-9):.2f} (target <= 1.0)"
    )
    print(
        f"supabase_sql_scrape_seconds ours={med['ours']:.4f} baseline={med['baseline']:.4f} ratio={ratio:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
