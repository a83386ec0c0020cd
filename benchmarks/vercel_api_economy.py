"""Vercel REST API economy: requests the deployments poller makes per hour at steady state,
against the naive approach (list every deployment on every refresh), same fake API, same run.

The project has 10,000 historical deployments and one new deployment a minute (each queued a
few seconds, built in 40-120 s). Both pollers refresh every `refresh_interval` (30 s, the
exporter's default). Time is simulated: the fake API and both pollers share a clock that
advances 30 s per refresh, so an hour takes seconds; requests are real HTTP on loopback.
Steady state: the first hour (first load included) is warm-up; the second hour is measured.

Run: .venv/bin/python -m benchmarks.vercel_api_economy [--history 10000]
Last line: vercel_api_requests_per_hour ours=<n> naive=<n> ratio=<ours/naive>
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import httpx
from aiohttp.test_utils import TestServer

from common.config import load_config
from exporters.vercel.app import VercelExporter
from exporters.vercel.config import VercelConfig, read_secrets
from fakes.vercel_api import VercelApiState, make_app, timeline
from fakes.vercel_setup import PROJECT_ID, TOKEN, SimClock, write_config

TEAM = "team_1a2b3c4d5e6f7g8h9i0j1k2l"
INTERVAL = 30.0
TARGET_RATIO = 0.05


def _load(path: Path) -> tuple[VercelConfig, dict[str, str]]:
    cfg = load_config(path, VercelConfig)
    return cfg, read_secrets(cfg, path)


async def naive_refresh(client: httpx.AsyncClient) -> int:
    """What a simple exporter does: page through the project's whole list every time."""
    n = 0
    until = None
    while True:
        params: dict[str, str | int] = {"projectId": PROJECT_ID, "limit": 100, "teamId": TEAM}
        if until:
            params["until"] = until
        resp = await client.get("/v6/deployments", params=params)
        resp.raise_for_status()
        n += 1
        doc = resp.json()
        until = doc["pagination"]["next"]
        if until is None:
            return n


async def run(history: int, hours_warm: int = 1) -> tuple[int, int, int]:
    clock = SimClock()
    now = clock()
    state = VercelApiState(token=TOKEN, team_id=TEAM, clock=clock)
    # One deployment a minute: `history` in the past and enough for the simulated hours ahead.
    state.add(timeline(PROJECT_ID, "web", now - history * 60, now + (hours_warm + 2) * 3600, 60.0))
    server = TestServer(make_app(state))
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        cfg, secrets = _load(
            write_config(Path(tmp), base_url=base, api={"lookback": f"{history + 60}m"})
        )
        exporter = VercelExporter(cfg, secrets, clock=clock, sleep=clock.sleep)
        poller = exporter.deployments
        assert poller is not None
        naive = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"})
        steps = int(3600 / INTERVAL)
        first_load = 0
        for hour in range(hours_warm + 1):
            measuring = hour == hours_warm
            ours_before = len(state.requests)
            naive_requests = 0
            for _ in range(steps):
                assert await poller.poll()
                if hour == 0 and not first_load:
                    first_load = len(state.requests)
                if measuring:
                    before = len(state.requests)
                    naive_requests += await naive_refresh(naive)
                    state.requests = state.requests[:before]  # the fake's log counts ours only
                # Not a sleep of ours: the clock of the fake, the poller and the rate limits.
                clock.t += INTERVAL
            ours = len(state.requests) - ours_before
        await naive.aclose()
        await exporter.aclose()
    await server.close()
    return ours, naive_requests, first_load


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.vercel_api_economy")
    ap.add_argument("--history", type=int, default=10_000, help="historical deployments")
    args = ap.parse_args(argv)
    ours, naive, first = asyncio.run(run(args.history))
    ratio = ours / naive
    print(
        f"first load: {first} requests for {args.history:,} deployments "
        "(pages of 100, paced by our 120/minute ceiling)"
    )
    print(
        f"steady state, refresh every {INTERVAL:.0f}s, one new deployment a minute: "
        f"ours {ours} requests/hour, naive (full listing each refresh) {naive} requests/hour; "
        f"ratio {ratio:.4f} (target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'MISSED'})"
    )
    print(f"vercel_api_requests_per_hour ours={ours} naive={naive} ratio={ratio:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
