"""A local notification sink: the strict Slack and PagerDuty fakes behind one port, with a viewer.

Run: python -m fakes.sink --listen 127.0.0.1:9790 --slack-webhook T0/B0/token=#ops-alerts
Open http://127.0.0.1:9790/ to read the messages as they arrive, each under its Slack channel
(?channel=%23finance shows one channel); GET /api/messages returns JSON (?channel= filters too).
"""

from __future__ import annotations

import argparse
import html
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from fakes.pagerduty import PagerDuty
from fakes.slack import SlackMessage, SlackWorkspace

SLACK = web.AppKey("slack", SlackWorkspace)
PAGER = web.AppKey("pager", PagerDuty)


def make_sink(
    slack_webhooks: dict[str, str], pager_keys: Iterable[str], echo: bool = False
) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    slack = SlackWorkspace(dict(slack_webhooks))
    pager = PagerDuty(set(pager_keys))
    app[SLACK] = slack
    app[PAGER] = pager
    slack.add_routes(app)
    pager.add_routes(app)

    async def messages(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "slack": [
                    {
                        "received_at": m.received_at,
                        "channel": m.channel,
                        "text": m.text(),
                        "payload": m.payload,
                    }
                    for m in _in_channel(request)
                ],
                "pagerduty": [
                    {
                        "received_at": e.received_at,
                        "event": e.event,
                        "dedup_key": e.dedup_key,
                        "incident_id": e.incident_id,
                    }
                    for e in request.app[PAGER].events
                ],
                # What python -m fakes.pagerduty_webhooks acts on.
                "pagerduty_incidents": [
                    {
                        "id": i.id,
                        "number": i.number,
                        "incident_key": i.incident_key,
                        "title": i.title,
                        "status": i.status,
                        "created_at": i.created_at.isoformat(),
                        "urgency": i.urgency,
                        "assignees": i.assignees,
                    }
                    for i in request.app[PAGER].incidents
                ],
            }
        )

    async def clear(request: web.Request) -> web.Response:
        request.app[SLACK].messages.clear()
        request.app[PAGER].events.clear()
        request.app[PAGER].incidents.clear()
        return web.Response(status=204)

    async def index(request: web.Request) -> web.Response:
        rows = []
        for m in reversed(_in_channel(request)[-200:]):
            when = time.strftime("%H:%M:%S", time.localtime(m.received_at))
            rows.append(
                f"<div class='m'><b>{when} <span class='ch'>{html.escape(str(m.channel))}</span></b>"
                f"<pre>{html.escape(m.text())}</pre></div>"
            )
        for e in reversed(request.app[PAGER].events[-50:]):
            when = time.strftime("%H:%M:%S", time.localtime(e.received_at))
            summary = (e.event.get("payload") or {}).get("summary", "")
            rows.append(
                f"<div class='m page'><b>{when} PAGE {html.escape(e.event.get('event_action', ''))}</b> {html.escape(summary)}</div>"
            )
        body = (
            "<html><head><meta http-equiv='refresh' content='3'><title>DEMO Slack sink</title>"
            "<style>body{font-family:sans-serif}.m{border-left:4px solid #36a;margin:8px;padding:4px 8px}"
            ".page{border-color:#c33}pre{white-space:pre-wrap}.ch{color:#36a}</style></head><body>"
            "<h1>wsinfra DEMO notification sink</h1><p>Local stand-in for Slack and PagerDuty. "
            "Nothing here leaves this machine.</p>"
            + _channels(request.app[SLACK], request.query.get("channel"))
            + "".join(rows or ["<p>No messages yet.</p>"])
            + "</body></html>"
        )
        return web.Response(text=body, content_type="text/html")

    app.router.add_get("/", index)
    app.router.add_get("/api/messages", messages)
    app.router.add_delete("/api/messages", clear)
    app.router.add_get("/-/healthy", _ok)

    if echo:
        # For the demo's log file: one line per notification as it arrives.
        @web.middleware
        async def echo_mw(request: web.Request, handler):  # type: ignore[no-untyped-def]
            resp = await handler(request)
            if request.method == "POST" and resp.status < 300:
                if request.path.startswith("/services/") and request.app[SLACK].messages:
                    m = request.app[SLACK].messages[-1]
                    print(f"--- slack {m.channel} ---\n{m.text()}\n", flush=True)
                elif request.path == "/v2/enqueue" and request.app[PAGER].events:
                    ev = request.app[PAGER].events[-1].event
                    print(
                        f"--- page {ev.get('event_action')}: {(ev.get('payload') or {}).get('summary', ev.get('dedup_key'))}\n",
                        flush=True,
                    )
            return resp

        app.middlewares.append(echo_mw)
    return app


def _in_channel(request: web.Request) -> list[SlackMessage]:
    """The Slack messages, only those of ?channel= when given (the PagerDuty events stay)."""
    messages = request.app[SLACK].messages
    wanted = request.query.get("channel")
    return [m for m in messages if m.channel == wanted] if wanted else list(messages)


def _channels(slack: SlackWorkspace, shown: str | None) -> str:
    """One link per Slack channel that received messages (#ops-alerts, #alerts, #finance, …),
    with its count: which channel a message reached is what routing is about."""
    counts = Counter(str(m.channel) for m in slack.messages)
    if not counts:
        return ""
    links = [
        f"<a href='/?channel={quote(ch)}'>{html.escape(ch)}</a> ({n})"
        for ch, n in sorted(counts.items())
    ]
    current = f" Showing {html.escape(shown)} only: <a href='/'>all</a>." if shown else ""
    return f"<p class='channels'>Slack channels: {', '.join(links)}.{current}</p>"


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="OK\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fakes.sink")
    p.add_argument("--listen", default="127.0.0.1:9790")
    # Secrets come from files (the same files Alertmanager reads), never from the command line,
    # where any user of the machine could read them in the process list.
    p.add_argument(
        "--slack-webhook-url-file",
        action="append",
        default=[],
        metavar="FILE[=#channel]",
        help="file holding an incoming-webhook URL (…/services/TEAM/BOT/TOKEN) to accept",
    )
    p.add_argument(
        "--pager-key-file",
        action="append",
        default=[],
        metavar="FILE",
        help="file holding a 32-character PagerDuty routing key to accept",
    )
    args = p.parse_args(argv)
    hooks: dict[str, str] = {}
    keys: list[str] = []
    try:
        for item in args.slack_webhook_url_file:
            path, _, channel = item.partition("=")
            url = Path(path).read_text(encoding="utf-8").strip()
            hooks[url.partition("/services/")[2]] = channel or "#general"
        keys = [Path(f).read_text(encoding="utf-8").strip() for f in args.pager_key_file]
    except OSError as exc:
        print(f"error: secret file {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    host, _, port = args.listen.rpartition(":")
    print(f"DEMO notification sink on http://{host}:{port}/", file=sys.stderr, flush=True)
    web.run_app(
        make_sink(hooks, keys, echo=True),
        host=host,
        port=int(port),
        print=None,
        access_log=None,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
