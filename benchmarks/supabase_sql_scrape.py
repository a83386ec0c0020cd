"""What a scrape of the Supabase exporter's SQL collectors costs the database, against Debian's
postgres_exporter (0.11, default queries) on the same database, interleaved round by round.

The database: a throwaway PostgreSQL (pg_stat_statements preloaded; autovacuum off, so that no
background work of the server's own lands in one exporter's round) holding 1,000 tables,
5,000 distinct statements recorded by pg_stat_statements and a Supabase-like auth.users of
20,000 users. Both exporters run as processes and are scraped over HTTP (keep-alive, as
Prometheus does). Ours runs with its production cadence: the cheap collectors on every scrape,
pg_stat_statements, the per-table statistics and the database size every 60 s, active users
every 300 s.

Time is compressed: production scrapes every 15 s; here every 0.25 s, and every cadence
interval and stale_after is divided by the same 60. A round is 20 scrapes of one exporter
(5 minutes of production scraping): for ours exactly the production share of costly reads,
pg_stat_statements, table statistics and size on 5 of the 20 scrapes and auth.users on 1 (read
back from its supabase_sql_collector_cached series and printed, so the share is checked, not
assumed). Ours and the baseline take turns (benchmarks.compare.interleave: each round one
run of each, who goes first alternating); each figure is the median over the rounds with its
range, and the ratio is the median of the per-round ratios ours/baseline.

Per round and exporter:
- database CPU per scrape: CPU time of the PostgreSQL server (the postmaster and every process
  it started, backends included, from /proc/<pid>/schedstat in ns; children it reaped during
  the round from its cutime/cstime) from just before the round's first scrape to just after
  its last, divided by its 20 scrapes. The whole period counts, the slow-cadence reads and the
  time between scrapes alike (an idle server's own ticking, ~0.2 ms a second, falls on both);
- wall time per scrape: the mean over the round of GET /metrics until the body is read.

Ours exports more (the top statements with their text, tables and predicate columns,
missing-index suspects, wraparound, active users) than postgres_exporter's defaults.

Run: .venv/bin/python -m benchmarks.supabase_sql_scrape [--rounds 9]
     (needs prometheus-postgres-exporter: WSINFRA_BENCH=1 scripts/bootstrap.sh installs it)
Last two lines:
  supabase_sql_scrape_seconds ours=<median wall> baseline=<median wall> ratio=<median ratio>
  supabase_sql_scrape_db_cpu_seconds ours=<median> baseline=<median> ratio=<median ratio>
"""

from __future__ import annotations

import argparse
import functools
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psycopg
import yaml
from psycopg import sql

from benchmarks.compare import figure, interleave, ratio
from compose.pg_cluster import Cluster, throwaway_cluster
from compose.processes import free_port, spawn, stop, wait_ready
from exporters.supabase.config import DEFAULT_CADENCE, Database

TABLES = 1000
STATEMENTS = 5000
USERS = 20_000
SCRAPE_INTERVAL = 15.0  # production: Prometheus's scrape interval
COMPRESS = 60.0  # benchmark seconds per production minute: 1
ROUND_MINUTES = 5.0  # production minutes a round stands for: a multiple of every interval
CLK_TCK = os.sysconf("SC_CLK_TCK")
_READ = re.compile(rb'supabase_sql_collector_cached\{collector="(\w+)",project="bench"\} 0\.0')


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


class ServerCpu:
    """CPU time of a PostgreSQL server: its postmaster and every process the postmaster started."""

    def __init__(self, cluster: Cluster) -> None:
        self.postmaster = int((cluster.dir / "postmaster.pid").read_text().split()[0])

    def seconds(self) -> float:
        pids = [self.postmaster]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int(_stat(int(entry.name))[1]) == self.postmaster:  # ppid
                        pids.append(int(entry.name))
                except (OSError, IndexError, ValueError):
                    continue
        ns = 0
        for pid in pids:
            try:
                ns += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile: its time is in the postmaster's cutime below
        reaped = _stat(self.postmaster)
        return ns / 1e9 + (int(reaped[13]) + int(reaped[14])) / CLK_TCK  # + cutime, cstime


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
        # Supabase's auth.users (its columns that matter here): what active users counts.
        conn.execute("CREATE SCHEMA auth")
        conn.execute(
            "CREATE TABLE auth.users (id uuid PRIMARY KEY, email text, encrypted_password text,"
            " raw_user_meta_data jsonb, created_at timestamptz, updated_at timestamptz,"
            " last_sign_in_at timestamptz)"
        )
        conn.execute(
            "INSERT INTO auth.users SELECT gen_random_uuid(), 'user' || g || '@example.com',"
            " md5(g::text), jsonb_build_object('name', 'User ' || g),"
            " now() - (g %% 400 || ' days')::interval, now(),"
            " now() - ((g * 37) %% 2160 || ' hours')::interval FROM generate_series(1, %s) g",
            (USERS,),
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


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def ours_config(cluster: Cluster) -> dict[str, object]:
    """The production defaults, every cadence interval and stale_after compressed."""
    db = Database(name="bench", conninfo=cluster.dsn())
    cadence = {
        name: {
            "interval": _ms(db.interval(name) / COMPRESS),
            "stale_after": _ms(db.stale_after(name) / COMPRESS),
        }
        for name in DEFAULT_CADENCE
    }
    return {"databases": [{"name": "bench", "conninfo": cluster.dsn(), "cadence": cadence}]}


class Target:
    """One exporter's /metrics over one kept-alive connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def scrape(self) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        try:
            self.conn.request("GET", "/metrics")
            resp = self.conn.getresponse()
        except (http.client.HTTPException, OSError):  # the server closed the kept-alive one
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.request("GET", "/metrics")
            resp = self.conn.getresponse()
        body = resp.read()
        took = time.perf_counter() - t0
        if resp.status != 200:
            raise SystemExit(f"127.0.0.1:{self.port}/metrics answered {resp.status}")
        return took, body


class Rounds:
    """Runs one round of paced scrapes per call, keeping the wall times and what ours read."""

    def __init__(self, cpu: ServerCpu, targets: dict[str, Target], scrapes: int, tick: float):
        self.cpu, self.targets, self.scrapes, self.tick = cpu, targets, scrapes, tick
        self.wall: dict[str, list[float]] = {k: [] for k in targets}
        self.lines: dict[str, int] = {}
        self.reads: list[Counter[str]] = []  # ours: per round, scrapes that read each collector

    def run(self, name: str) -> float:
        """Database CPU seconds per scrape over one round of `name`."""
        target, walls, reads = self.targets[name], [], Counter[str]()
        c0 = self.cpu.seconds()
        start = time.perf_counter()
        for i in range(self.scrapes):
            delay = start + i * self.tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            seconds, body = target.scrape()
            walls.append(seconds)
            reads.update(m.decode() for m in _READ.findall(body))
            self.lines[name] = body.count(b"\n")
        cpu = self.cpu.seconds() - c0
        self.wall[name].append(sum(walls) / len(walls))
        if name == "ours":
            self.reads.append(reads)
        return cpu / self.scrapes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.supabase_sql_scrape",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args(argv)
    baseline_bin = shutil.which("prometheus-postgres-exporter") or shutil.which("postgres_exporter")
    if baseline_bin is None:
        print(
            "prometheus-postgres-exporter is not installed (WSINFRA_BENCH=1 scripts/bootstrap.sh)",
            file=sys.stderr,
        )
        return 2
    scrapes = round(ROUND_MINUTES * 60 / SCRAPE_INTERVAL)
    tick = SCRAPE_INTERVAL / COMPRESS
    settings = {
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.max": "10000",
        "autovacuum": "off",
    }
    with throwaway_cluster(settings) as cluster, tempfile.TemporaryDirectory() as tmp:
        populate(cluster)
        cfg = Path(tmp) / "supabase.yaml"
        cfg.write_text(yaml.safe_dump(ours_config(cluster)))
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
            targets = {"ours": Target(ours_port), "baseline": Target(base_port)}
            rounds = Rounds(ServerCpu(cluster), targets, scrapes, tick)
            # Warm-up, not counted: a round of each (connections, statement texts; the top
            # statements settle once both exporters' own queries are in pg_stat_statements),
            # then past the longest cadence, so the first round starts like every other: with
            # every costly collector due.
            for name in targets:
                rounds.run(name)
            rounds = Rounds(ServerCpu(cluster), targets, scrapes, tick)
            time.sleep(max(DEFAULT_CADENCE.values()) / COMPRESS)
            with psycopg.connect(cluster.dsn()) as conn:
                version = conn.info.server_version // 10000
            cpu = interleave(
                args.rounds, {n: functools.partial(rounds.run, n) for n in ("ours", "baseline")}
            )
        finally:
            stop(ours)
            base.terminate()
            base.wait(timeout=10)
    print(
        f"database: PostgreSQL {version}, {TABLES} tables, {STATEMENTS} distinct statements in "
        f"pg_stat_statements, {USERS} users in auth.users"
    )
    print(
        f"a round: {scrapes} scrapes of each exporter, one every {tick:g} s = "
        f"{ROUND_MINUTES:g} minutes of {SCRAPE_INTERVAL:g} s scrapes compressed {COMPRESS:g}x; "
        f"{args.rounds} interleaved rounds"
    )
    shares = ", ".join(
        f"{name} {min(r[name] for r in rounds.reads)}-{max(r[name] for r in rounds.reads)}"
        f" (production: {round(ROUND_MINUTES * 60 / DEFAULT_CADENCE[name])})"
        for name in DEFAULT_CADENCE
    )
    print(f"ours: scrapes per round that read {shares}; the others every scrape")
    for name in ("ours", "baseline"):
        print(
            f"{name:8} database CPU per scrape ms "
            f"{figure([c * 1000 for c in cpu[name]]).show('{:.2f}')}  "
            f"wall per scrape ms {figure([w * 1000 for w in rounds.wall[name]]).show('{:.1f}')}  "
            f"{rounds.lines[name]} lines"
        )
    cpu_ratio = ratio(cpu["ours"], cpu["baseline"])
    wall_ratio = ratio(rounds.wall["ours"], rounds.wall["baseline"])
    for what, pairs in (("database CPU", cpu), ("wall", rounds.wall)):
        each = " ".join(
            f"{o / b:.2f}" for o, b in zip(pairs["ours"], pairs["baseline"], strict=True)
        )
        print(f"per-round ratio ours/baseline, {what}: {each}")
    print(
        f"per-round ratio ours/baseline: database CPU {cpu_ratio.show('{:.2f}')} (target <= 1.0); "
        f"wall {wall_ratio.show('{:.2f}')}"
    )
    wall = {k: figure(v).median for k, v in rounds.wall.items()}
    print(
        f"supabase_sql_scrape_seconds ours={wall['ours']:.4f} baseline={wall['baseline']:.4f} "
        f"ratio={wall_ratio.median:.3f}"
    )
    med = {k: figure(v).median for k, v in cpu.items()}
    print(
        f"supabase_sql_scrape_db_cpu_seconds ours={med['ours']:.5f} "
        f"baseline={med['baseline']:.5f} ratio={cpu_ratio.median:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
