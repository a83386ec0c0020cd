"""DEMO Vercel: the strict fake REST API plus a drain feed into the exporter.

Run: python -m tests.fakes.vercel --listen 127.0.0.1:19783 --exporter http://127.0.0.1:19703
       --secrets-dir DIR --project-id prj_demo --platform-control 127.0.0.1:19781
The API serves a week of deployment history and a new deployment every few minutes; the feed
posts signed log, trace and Speed Insights batches every `--interval` seconds, with errors
and latency following the demo platform's mode (`./wsinfra fault error|slow|ok`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
import urllib.request
from pathlib import Path

import httpx
from aiohttp import web

from tests.fakes.vercel_api import VercelApiState, make_app, timeline
from tests.fakes.vercel_drains import Sender

log = logging.getLogger("tests.fakes.vercel")


def _mode(control: str | None) -> str:
    if not control:
        return "ok"
    try:
        with urllib.request.urlopen(f"http://{control}/mode", timeout=2) as resp:
            mode = json.loads(resp.read())["mode"]
    except (OSError, ValueError, KeyError):
        return "ok"
    return str(mode)


def _feed(sender: Sender, control: str | None, interval: float, stop: asyncio.Event) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            started = time.monotonic()
            mode = _mode(control)
            try:
                # "down" stands for Vercel itself being unreachable: no traffic, so no drains.
                codes = {} if mode == "down" else sender.send_round(client, mode)
                if any(c != 200 for c in codes.values()):
                    log.warning("drain delivery refused: %s", codes)
            except httpx.HTTPError as exc:
                log.warning("exporter not reachable: %s", type(exc).__name__)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))


async def _serve(args: argparse.Namespace) -> None:
    secrets_dir = Path(args.secrets_dir)
    token = (secrets_dir / "vercel_api_token").read_text().strip()
    state = VercelApiState(token=token, team_id=args.team_id)
    now = time.time()
    state.add(timeline(args.project_id, "web", now - 7 * 86400, now + 2 * 86400, args.deploy_every))
    runner = web.AppRunner(make_app(state, health=True), access_log=None)
    await runner.setup()
    host, _, port = args.listen.rpartition(":")
    await web.TCPSite(runner, host or "127.0.0.1", int(port)).start()
    print(f"DEMO Vercel API on http://{args.listen}/v6/deployments", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    feed = None
    if args.exporter:
        secrets = {
            name: (secrets_dir / f"vercel_{name}_drain_secret").read_text().strip()
            for name in ("logs", "traces", "speed_insights")
        }
        sender = Sender(args.exporter, secrets, args.project_id)
        feed = asyncio.create_task(
            asyncio.to_thread(_feed, sender, args.platform_control, args.interval, stop)
        )
    try:
        await asyncio.Event().wait()
    finally:
        stop.set()
        if feed:
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fakes.vercel", description=__doc__)
    p.add_argument("--listen", default="127.0.0.1:19783")
    p.add_argument("--secrets-dir", required=True)
    p.add_argument("--project-id", default="prj_demo0000000000000000000001")
    p.add_argument("--team-id", default="team_demo000000000000000001")
    p.add_argument("--exporter", help="base URL of the Vercel exporter to feed drains into")
    p.add_argument("--platform-control", help="host:port of the demo platform's control API")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between drain rounds")
    p.add_argument("--deploy-every", type=float, default=300.0, help="seconds between deployments")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
