"""Overview dashboard load cost over 30 days, with the recording rules and without them.

1. Backfill: a fleet's worth of series, `--days` of history at `--interval`, written as
   OpenMetrics one 2-hour block at a time and turned into TSDB blocks by
   `promtool tsdb create-blocks-from openmetrics` (promtool 2.42 re-reads its whole input for
   every 2-hour block, so one file per block keeps the import linear). The fleet: `--targets`
   uptime targets probed from `--regions` regions (probe and failure counters, durations), one
   Vercel project in four regions (request counters by status/cache/path type, request-duration
   histograms), and the recorded series the overview reads, generated from the same model at
   their rule groups' intervals (read from alert_rules/generated), as Prometheus would have
   recorded them.
2. A real Prometheus opens the blocks (after compaction settles).
3. Every query of wsinfra-overview is run as Grafana runs it for a 30-day range: range queries
   with a step of range/1000 (a panel ~1000 px wide) and `$__rate_interval` = step + scrape
   interval; instant queries at the end. "ours" = the dashboard as built (recording rules);
   "raw" = each recorded series replaced by the expression its rule evaluates. A round loads the
   whole dashboard once each way, in turns (`--repeat` rounds, at least 5); the totals are the
   medians of the rounds' sums, printed with their range, and each query's time in the table is
   its median over the rounds.

Run: .venv/bin/python -m benchmarks.dashboard_queries [--targets 50 --regions 3 --days 30]
Last line: overview_dashboard_query_seconds ours=<total> raw=<total> ratio=<ours/raw>
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from alert_rules.config import load_rules
from benchmarks.compare import figure, interleave, ratio
from common.durations import parse_duration
from compose.processes import free_port, prometheus_argv, promtool_binary, spawn, stop, wait_ready
from dashboards.build import GENERATED

ROOT = Path(__file__).resolve().parent.parent

BLOCK = 7200
VERCEL_REGIONS = ("iad1", "fra1", "cdg1", "sfo1")
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
# Without the recording rules, each recorded series is what its rule evaluates, inline.
RAW = {
    "project_region:vercel_requests:rate5m": "sum by (project, environment, region) (rate(vercel_requests_total[5m]))",
    "project_region:vercel_request_errors:rate5m": 'sum by (project, environment, region) (rate(vercel_requests_total{status_class=~"5xx|none"}[5m]))',
    "project_region:vercel_request_errors:ratio_rate5m": '(sum by (project, environment, region) (rate(vercel_requests_total{status_class=~"5xx|none"}[5m])) / sum by (project, environment, region) (rate(vercel_requests_total[5m])))',
    "project_region:vercel_cache_hits:ratio_rate30m": '(sum by (project, environment, region) (rate(vercel_requests_total{cache=~"HIT|STALE|PRERENDER|REVALIDATED",path_type=~"static|prerender|partial_prerender"}[30m])) / sum by (project, environment, region) (rate(vercel_requests_total{cache=~"HIT|STALE|PRERENDER|REVALIDATED|MISS",path_type=~"static|prerender|partial_prerender"}[30m])))',
    "project:vercel_request_errors:ratio_rate30d": '(sum by (project) (increase(vercel_requests_total{environment="production",status_class=~"5xx|none"}[30d])) / sum by (project) (increase(vercel_requests_total{environment="production"}[30d])))',
    "target:uptime_probe_errors:ratio_rate30d": "min by (target) (sum without (instance) (increase(uptime_probe_failures_total[30d])) / sum without (instance) (increase(uptime_probes_total[30d])))",
    "target:uptime_error_budget_remaining:ratio30d": "(1 - min by (target) (sum without (instance) (increase(uptime_probe_failures_total[30d])) / sum without (instance) (increase(uptime_probes_total[30d]))) / 0.001)",
    "region:uptime_probe_duration_seconds:avg": "avg by (region) (uptime_probe_duration_seconds)",
    "project_status:vercel_requests:rate5m": "sum by (project, environment, status_class) (rate(vercel_requests_total[5m]))",
}
for q in (50, 95, 99):
    RAW[f"project_kind:vercel_request_duration_seconds:p{q}_rate5m"] = (
        f"histogram_quantile(0.{q}, sum by (le, project, environment, route_kind) (rate(vercel_request_duration_seconds_bucket[5m])))"
    )
    RAW[f"project_region_kind:vercel_request_duration_seconds:p{q}_rate5m"] = (
        f"histogram_quantile(0.{q}, sum by (le, project, environment, region, route_kind) (rate(vercel_request_duration_seconds_bucket[5m])))"
    )


def raw_expr(expr: str) -> str:
    """Replace each recorded series (with its matchers) by its rule's expression, filtered."""

    def sub(m: re.Match[str]) -> str:
        name, matchers = m.group(1), m.group(2) or ""
        base = RAW[name]
        if not matchers:
            return base
        # The dashboard's matchers select on labels the rule keeps: apply them to every
        # selector inside the rule's expression.
        inner = matchers[1:-1]

        def add(sel: re.Match[str]) -> str:
            metric, existing = sel.group(1), sel.group(2)
            parts = [p for p in (existing[1:-1] if existing else "", inner) if p]
            return f"{metric}{{{', '.join(parts)}}}"

        return re.sub(
            r"\b(vercel_requests_total|vercel_request_duration_seconds_bucket|uptime_probe_failures_total|uptime_probes_total|uptime_probe_duration_seconds)(\{[^}]*\})?",
            add,
            base,
        )

    names = "|".join(re.escape(n) for n in RAW)
    return re.sub(rf"\b({names})(\{{[^}}]*\}})?", sub, expr)


# -- backfill --------------------------------------------------------------------------------


class Series:
    """One series: its OpenMetrics prefix and a function from step index to value."""

    def __init__(
        self,
        prefix: str,
        kind: str,
        rate: float,
        base: float = 0.0,
        noise: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.prefix = prefix
        self.kind = kind  # counter | gauge
        self.rate = rate
        self.base = base
        self.noise = noise
        self.rng = random.Random(seed)
        self.value = base

    def values(self, n: int) -> Iterator[float]:
        if self.kind == "counter":
            for _ in range(n):
                self.value += self.rate * (1 + self.noise * (self.rng.random() - 0.5))
                yield self.value
        else:
            for _ in range(n):
                yield self.base + self.noise * (self.rng.random() - 0.5)


def fleet(targets: int, regions: int, interval: float) -> tuple[list[Series], list[Series]]:
    """(raw series at the scrape interval, recorded series at their rule intervals)."""
    raw: list[Series] = []
    for t in range(targets):
        for r in range(regions):
            lab = f'instance="uptime-{r}:9701",job="uptime",region="region-{r}",target="t{t:03d}"'
            probes = interval / 5  # a probe every 5 s
            raw.append(Series(f"uptime_probes_total{{{lab}}}", "counter", probes, seed=t * 7 + r))
            fail = probes * (0.0003 if t % 10 else 0.002)
            raw.append(
                Series(
                    f"uptime_probe_failures_total{{{lab}}}",
                    "counter",
                    fail,
                    noise=2.0,
                    seed=t * 11 + r,
                )
            )
            raw.append(
                Series(
                    f"uptime_probe_duration_seconds{{{lab}}}",
                    "gauge",
                    0,
                    base=0.2 + 0.05 * r,
                    noise=0.1,
                    seed=t * 13 + r,
                )
            )
    rps = 50.0  # requests per second per Vercel region
    for region in VERCEL_REGIONS:
        for status, share in (("2xx", 0.985), ("4xx", 0.01), ("5xx", 0.005)):
            for cache, path_type, part in (
                ("HIT", "prerender", 0.45),
                ("MISS", "prerender", 0.02),
                ("MISS", "func", 0.43),
                ("HIT", "static", 0.1),
            ):
                lab = f'cache="{cache}",environment="production",instance="vercel:9703",job="vercel",path_type="{path_type}",project="web",region="{region}",status_class="{status}"'
                raw.append(
                    Series(
                        f"vercel_requests_total{{{lab}}}",
                        "counter",
                        rps * share * part * interval,
                        noise=0.5,
                        seed=hash(lab) & 0xFFFF,
                    )
                )
        for kind, median in (("page", 0.35), ("api", 0.12)):
            lab = f'environment="production",instance="vercel:9703",job="vercel",project="web",region="{region}",route_kind="{kind}",status_class="2xx"'
            per_step = rps * 0.4 * interval
            for le in (*BUCKETS, math.inf):
                # A log-normal latency distribution: the share of requests under `le`.
                share = (
                    1.0
                    if le == math.inf
                    else 0.5 * (1 + math.erf(math.log(le / median) / (0.5 * math.sqrt(2))))
                )
                le_s = "+Inf" if le == math.inf else repr(float(le))
                raw.append(
                    Series(
                        f'vercel_request_duration_seconds_bucket{{{lab},le="{le_s}"}}',
                        "counter",
                        per_step * share,
                    )
                )
    recorded: list[Series] = []
    for region in VERCEL_REGIONS:
        lab = f'environment="production",project="web",region="{region}"'
        recorded += [
            Series(
                f"project_region:vercel_requests:rate5m{{{lab}}}", "gauge", 0, base=rps, noise=5
            ),
            Series(
                f"project_region:vercel_request_errors:rate5m{{{lab}}}",
                "gauge",
                0,
                base=rps * 0.005,
                noise=0.1,
            ),
            Series(
                f"project_region:vercel_request_errors:ratio_rate5m{{{lab}}}",
                "gauge",
                0,
                base=0.005,
                noise=0.002,
            ),
            Series(
                f"project_region:vercel_cache_hits:ratio_rate30m{{{lab}}}",
                "gauge",
                0,
                base=0.97,
                noise=0.01,
            ),
        ]
        for kind in ("page", "api"):
            for q, v in ((50, 0.3), (95, 0.8), (99, 1.2)):
                recorded.append(
                    Series(
                        f'project_region_kind:vercel_request_duration_seconds:p{q}_rate5m{{{lab},route_kind="{kind}"}}',
                        "gauge",
                        0,
                        base=v,
                        noise=0.1,
                    )
                )
    for kind in ("page", "api"):
        for q, v in ((50, 0.3), (95, 0.8), (99, 1.2)):
            recorded.append(
                Series(
                    f'project_kind:vercel_request_duration_seconds:p{q}_rate5m{{environment="production",project="web",route_kind="{kind}"}}',
                    "gauge",
                    0,
                    base=v,
                    noise=0.1,
                )
            )
    for r in range(regions):
        recorded.append(
            Series(
                f'region:uptime_probe_duration_seconds:avg{{region="region-{r}"}}',
                "gauge",
                0,
                base=0.2 + 0.05 * r,
                noise=0.02,
            )
        )
    for status, share in (("2xx", 0.985), ("4xx", 0.01), ("5xx", 0.005)):
        recorded.append(
            Series(
                f'project_status:vercel_requests:rate5m{{environment="production",project="web",status_class="{status}"}}',
                "gauge",
                0,
                base=4 * rps * share,
                noise=4 * rps * share / 20,
            )
        )
    slow = [
        Series(
            'project:vercel_request_errors:ratio_rate30d{project="web"}',
            "gauge",
            0,
            base=0.005,
            noise=0.0005,
        )
    ]
    for t in range(targets):
        err = 0.0003 if t % 10 else 0.002
        slow.append(
            Series(
                f'target:uptime_probe_errors:ratio_rate30d{{target="t{t:03d}"}}',
                "gauge",
                0,
                base=err,
                noise=err / 10,
            )
        )
        slow.append(
            Series(
                f'target:uptime_error_budget_remaining:ratio30d{{target="t{t:03d}"}}',
                "gauge",
                0,
                base=1 - err / 0.001,
                noise=0.01,
            )
        )
    return raw, recorded + slow


def rule_intervals() -> dict[str, float]:
    """Recorded series -> how often its group evaluates (as Prometheus would have written it)."""
    default = load_rules().evaluation_interval
    out = {}
    for path in (ROOT / "alert_rules" / "generated").glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            every = parse_duration(group["interval"]) if "interval" in group else default
            out.update({r["record"]: every for r in group["rules"] if "record" in r})
    return out


def write_block(path: Path, start: int, interval: float, series: list[tuple[Series, float]]) -> int:
    n = 0
    with path.open("w", encoding="ascii") as f:
        for s, step in series:
            count = int(BLOCK / step)
            ts = [start + i * step for i in range(count)]
            f.write(
                "".join(
                    f"{s.prefix} {v:.6g} {t:.0f}\n"
                    for v, t in zip(s.values(count), ts, strict=True)
                )
            )
            n += count
        f.write("# EOF\n")
    return n


def backfill(data: Path, work: Path, args: argparse.Namespace) -> tuple[int, float, float, int]:
    raw, recorded = fleet(args.targets, args.regions, args.interval)
    every = rule_intervals()
    plan = [(s, args.interval) for s in raw] + [
        (s, every[s.prefix.split("{")[0]]) for s in recorded
    ]
    end = int(time.time()) // BLOCK * BLOCK
    start = end - args.days * 86400
    promtool = promtool_binary()
    total = 0
    gen_s = imp_s = 0.0

    def run_import(path: Path) -> None:
        subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(path), str(data)],
            check=True,
            capture_output=True,
        )
        path.unlink()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for i, block_start in enumerate(range(start, end, BLOCK)):
            t0 = time.perf_counter()
            path = work / f"block-{i:04d}.om"
            total += write_block(path, block_start, args.interval, plan)
            gen_s += time.perf_counter() - t0
            if pending is not None:
                t1 = time.perf_counter()
                pending.result()
                imp_s += time.perf_counter() - t1
            pending = pool.submit(run_import, path)
        if pending is not None:
            pending.result()
    return total, gen_s, imp_s, end


# -- queries ---------------------------------------------------------------------------------


def overview_queries() -> list[tuple[str, str, bool]]:
    doc = json.loads((GENERATED / "wsinfra-overview.json").read_text())
    out = []
    for p in doc["panels"]:
        for t in p.get("targets", []):
            if "expr" in t:
                out.append((p["title"], t["expr"], bool(t.get("instant"))))
    return out


def substitute(expr: str, step: int, days: int) -> str:
    values = {
        "environment": "production",
        "project": ".*",
        "region": ".*",
        "__rate_interval": f"{step + 15}s",
        "__range": f"{days}d",
    }
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def timed_query(
    base: str, expr: str, instant: bool, start: float, end: float, step: int
) -> tuple[float, int]:
    """Seconds the query took, and how many series it returned."""
    if instant:
        url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": end})
    else:
        url = f"{base}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": expr, "start": start, "end": end, "step": step}
        )
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as resp:  # noqa: S310 - loopback
        doc = json.loads(resp.read())
    elapsed = time.perf_counter() - t0
    if doc.get("status") != "success":
        raise RuntimeError(f"{expr}: {doc}")
    return elapsed, len(doc["data"]["result"])


def settle(base: str, timeout: float = 900) -> None:
    """Wait until the compactor has nothing left to do (block count stable for 30 s)."""

    def blocks() -> float:
        url = f"{base}/api/v1/query?query=prometheus_tsdb_blocks_loaded"
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback
            res = json.loads(r.read())["data"]["result"]
        return float(res[0]["value"][1]) if res else -1

    deadline = time.monotonic() + timeout
    last, since = blocks(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(5)
        now = blocks()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 30:
            return


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_queries")
    ap.add_argument("--targets", type=int, default=50)
    ap.add_argument("--regions", type=int, default=3)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--interval", type=float, default=15.0)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wsinfra-dash-bench-") as tmp:
        root = Path(tmp)
        data, work = root / "data", root / "work"
        data.mkdir()
        work.mkdir()
        samples, gen_s, imp_s, data_end = backfill(data, work, args)
        print(
            f"backfilled {samples:,} samples ({args.targets} targets x {args.regions} regions + Vercel, {args.days} d at {args.interval:g} s): generate {gen_s:.0f} s, import waited {imp_s:.0f} s"
        )
        port = free_port()
        cfg = root / "prometheus.yml"
        cfg.write_text("global: {scrape_interval: 15s}\n")
        proc = spawn(prometheus_argv(cfg, port, data), root / "prometheus.log")
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{base}/-/ready", timeout=600, proc=proc)
            settle(base)
            # The dashboard opened just after the last backfilled sample.
            end = data_end - 30
            start = end - args.days * 86400
            step = max(15, int(args.days * 86400 / 1000))
            queries = [
                (
                    title,
                    substitute(expr, step, args.days),
                    substitute(raw_expr(expr), step, args.days),
                    instant,
                )
                for title, expr, instant in overview_queries()
            ]
            timings: dict[str, list[list[tuple[float, int]]]] = {"ours": [], "raw": []}

            def load(kind: str) -> float:
                one = [
                    timed_query(base, q_o if kind == "ours" else q_r, inst, start, end, step)
                    for _, q_o, q_r, inst in queries
                ]
                timings[kind].append(one)
                return sum(t for t, _ in one)

            totals = interleave(
                args.repeat, {"ours": lambda: load("ours"), "raw": lambda: load("raw")}
            )
            rows: list[tuple[str, float, float, int, int]] = [
                (
                    title,
                    statistics.median(r[i][0] for r in timings["ours"]),
                    statistics.median(r[i][0] for r in timings["raw"]),
                    timings["ours"][0][i][1],
                    timings["raw"][0][i][1],
                )
                for i, (title, _, _, _) in enumerate(queries)
            ]
        finally:
            stop(proc)
            shutil.rmtree(data, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'panel query':{width}}  {'ours s':>8}  {'raw s':>8}  series (ours/raw)")
    for title, o, r, n_o, n_r in rows:
        print(f"{title:{width}}  {o:8.3f}  {r:8.3f}  {n_o}/{n_r}")
    ours_fig, raw_fig = figure(totals["ours"]), figure(totals["raw"])
    per_round = ratio(totals["ours"], totals["raw"], higher_is_better=False)
    print(
        f"{len(rows)} queries, 30-day range, step {step} s, {args.repeat} interleaved rounds:\n"
        f"  ours {ours_fig.show('{:.2f}')} s (target < 1 s)\n"
        f"  raw  {raw_fig.show('{:.2f}')} s\n"
        f"  speed-up per round {per_round.show('{:.1f}')}x"
    )
    print(
        f"overview_dashboard_query_seconds ours={ours_fig.median:.3f} raw={raw_fig.median:.3f} ratio={ours_fig.median / raw_fig.median:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
