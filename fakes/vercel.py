"""DEMO Vercel: the strict fake REST API plus a drain feed into the exporter.

Run: python -m fakes.vercel --listen 127.0.0.1:19783 --exporter http://127.0.0.1:19703
       --secrets-dir DIR --project-id prj_demo --platform-control 127.0.0.1:19781
The API serves a week of deployment history and a new deployment every few minutes; the feed
posts signed log, trace and Speed Insights batches every `--interval` seconds, with errors
and latency following the demo platform's mode (`./wsinfra fault error|slow|ok`), and with
`--recorder` sends each deployment's Vercel webhooks (created, succeeded or error) as it happens.
With `vercel_deploy_hook_url` in the secrets dir (the operator API's demo hook), that hook
deploys `main` to production: POST /api/infrastructure/deployments → a new deployment here →
its webhooks → deployment_history.
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
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web

from fakes.vercel_api import FakeDeployment, FakeHook, VercelApiState, make_app, timeline
from fakes.vercel_drains import Sender, sign

log = logging.getLogger("fakes.vercel")


def _mode(control: str | None) -> str:
    if not control:
        return "ok"
    try:
        with urllib.request.urlopen(f"http://{control}/mode", timeout=2) as resp:
            mode = json.loads(resp.read())["mode"]
    except (OSError, ValueError, KeyError):
        return "ok"
    return str(mode)


def webhook(d: FakeDeployment, kind: str, at_ms: int, team_id: str | None) -> dict[str, Any]:
    """A Vercel account webhook delivery (apis.md §2.2) for one deployment event."""
    return {
        "id": f"whd_{d.uid[4:]}_{kind.rsplit('.', 1)[1]}",
        "type": kind,
        "createdAt": at_ms,
        "region": "sfo1",
        "payload": {
            "team": {"id": team_id},
            "user": {"id": "eLrCnEgbKhsHyfbiNR7E8496"},
            "deployment": {
                "id": d.uid,
                "meta": {"githubCommitSha": d.sha, "githubCommitRef": d.ref},
                "url": f"{d.name}-{d.uid[4:13].lower()}-acme.vercel.app",
                "name": d.name,
            },
            "links": {
                "deployment": f"https://vercel.com/acme/{d.name}/{d.uid[4:]}",
                "project": f"https://vercel.com/acme/{d.name}",
            },
            "target": d.target,
            "project": {"id": d.project_id},
            "plan": "pro",
            "regions": ["iad1"],
        },
    }


class Webhooks:
    """Sends the deployment events that happened on the fake's timeline since the last call."""

    def __init__(
        self, state: VercelApiState, recorder: str, secret: str, team_id: str | None
    ) -> None:
        self.state = state
        self.url = recorder.rstrip("/") + "/webhooks/deployments/vercel"
        self.secret = secret
        self.team_id = team_id
        # The first call replays the last six hours, so the recorder has history to show.
        self.since_ms = int((state.clock() - 6 * 3600) * 1000)

    def send_due(self, client: httpx.Client) -> None:
        now_ms = int(self.state.clock() * 1000)
        events = []
        for d in self.state.deployments:
            if self.since_ms < d.created_ms <= now_ms:
                events.append((d.created_ms, "deployment.created", d))
            if self.since_ms < d.done_ms <= now_ms:
                kind = "deployment.succeeded" if d.outcome == "READY" else "deployment.error"
                events.append((d.done_ms, kind, d))
        for at_ms, kind, d in sorted(events, key=lambda e: e[0]):
            body = json.dumps(webhook(d, kind, at_ms, self.team_id)).encode()
            resp = client.post(
                self.url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "x-vercel-signature": sign(self.secret, body),
                },
            )
            if resp.status_code >= 500:
                return  # the recorder is not ready: try again from here next round
            if resp.status_code >= 400:
                log.warning("recorder refused a deployment webhook: %s", resp.status_code)
        self.since_ms = now_ms


def _feed(
    sender: Sender,
    control: str | None,
    interval: float,
    stop: asyncio.Event,
    hooks: Webhooks | None,
) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            if hooks is not None:
                try:
                    hooks.send_due(client)
                except httpx.HTTPError as exc:
                    log.warning("recorder not reachable: %s", type(exc).__name__)
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
    hook_file = secrets_dir / "vercel_deploy_hook_url"
    if hook_file.exists():
        # .../v1/integrations/deploy/<project id>/<hook id>: serve the hook the API will call.
        project_id, hook_id = urlsplit(hook_file.read_text().strip()).path.split("/")[-2:]
        state.hooks.append(FakeHook(project_id, hook_id, "main", "production", "web"))
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
        hooks = None
        hook_secret = secrets_dir / "vercel_webhook_secret"
        if args.recorder and hook_secret.exists():
            hooks = Webhooks(state, args.recorder, hook_secret.read_text().strip(), args.team_id)
        feed = asyncio.create_task(
            asyncio.to_thread(_feed, sender, args.platform_control, args.interval, stop, hooks)
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
    p = argparse.ArgumentParser(prog="python -m fakes.vercel", description=__doc__)
    p.add_argument("--listen", default="127.0.0.1:19783")
    p.add_argument("--secrets-dir", required=True)
    p.add_argument("--project-id", default="prj_demo0000000000000000000001")
    p.add_argument("--team-id", default="team_demo000000000000000001")
    p.add_argument("--exporter", help="base URL of the Vercel exporter to feed drains into")
    p.add_argument("--platform-control", help="host:port of the demo platform's control API")
    p.add_argument("--recorder", help="base URL of the recorder: deployment webhooks go there")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between drain rounds")
    # Every minute: a demo (and the dashboard tests) see builds finish within a minute or two.
    p.add_argument("--deploy-every", type=float, default=60.0, help="seconds between deployments")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
