"""Command line.

    python -m exporters.billing --config.file billing.yaml [--web.listen-address :9705]
    python -m exporters.billing report --config.file billing.yaml [--month 2026-10]
        [--active-users N | --prometheus http://127.0.0.1:9090] [--format text|json]

The report reads the sources once (the month and the one before it), so it needs no running
exporter; active users come from the flag or from Prometheus (supabase_active_users, 30d).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

from common.cli import exporter_main, load_for_cli
from common.logging import configure
from exporters.billing import figures, report
from exporters.billing.app import BillingExporter, make_app
from exporters.billing.config import BillingConfig
from exporters.billing.ledger import Ledger
from exporters.billing.sources import FETCH_ERRORS, failure, make_sources

log = logging.getLogger("exporters.billing")
DEFAULT_PORT = 9705
ACTIVE_USERS_QUERY = 'sum(supabase_active_users{window="30d"})'


def summary(cfg: BillingConfig, _: None) -> str:
    names = ", ".join(s.name for s in cfg.sources())
    ct = "; writes cost_tracking" if cfg.cost_tracking else ""
    return f"sources: {names}; budget {cfg.monthly_budget_usd} USD/month{ct}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["report"]:
        return report_main(args[1:])
    return exporter_main(
        args,
        prog="python -m exporters.billing",
        description=__doc__,
        default_port=DEFAULT_PORT,
        model=BillingConfig,
        # Secrets are only checked at start: the API clients re-read a token file when it
        # changes, cost_tracking its password file at each connection.
        prepare=lambda cfg, _: None,
        summary=summary,
        make_app=lambda cfg, _: make_app(BillingExporter(cfg)),
        log=log,
    )


def _month(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not YYYY-MM") from None


def report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m exporters.billing report")
    parser.add_argument("--config.file", dest="config", type=Path, required=True)
    parser.add_argument("--month", type=_month, help="YYYY-MM (UTC); default: this month")
    users = parser.add_mutually_exclusive_group()
    users.add_argument("--active-users", type=int, help="30-day active users")
    users.add_argument("--prometheus", help="read supabase_active_users from this Prometheus")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    return parser


def report_main(argv: list[str]) -> int:
    args = report_parser().parse_args(argv)
    configure("warning", "logfmt")
    loaded = load_for_cli(args.config, BillingConfig, lambda cfg, _: None)
    if loaded is None:
        return 2
    cfg, _ = loaded
    today = datetime.now(UTC).date()
    start = args.month or figures.month_start(today)
    if start > today:
        print(f"{start:%Y-%m} has not started yet", file=sys.stderr)
        return 2
    active = args.active_users
    if args.prometheus:
        try:
            active = active_users_from_prometheus(args.prometheus)
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            print(
                f"cannot read active users from Prometheus: {type(exc).__name__}", file=sys.stderr
            )
            active = None
    try:
        rep = asyncio.run(make_report(cfg, start, today, active))
    except SourceFailed as exc:
        print(f"a source failed, no report: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(rep.to_json(), indent=2))
    else:
        print(rep.to_text(), end="")
    return 0


class SourceFailed(Exception):
    """`<source>: <reason>: <detail>` (never a secret or a response body)."""


async def make_report(
    cfg: BillingConfig,
    start: date,
    today: date,
    active_users: int | None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> report.Report:
    """Fetch the month, the one before it (MoM) and the run-rate days, and build the report."""
    first = min(figures.previous_month(start), today - timedelta(days=figures.BASELINE_DAYS + 1))
    end = min(figures.next_month(start), today + timedelta(days=1))
    ledger = Ledger()
    sources = make_sources(cfg, transport=transport)
    try:
        for src in sources:
            try:
                d = await src.fetch(first, end)
            except FETCH_ERRORS as exc:
                reason, detail = failure(exc)
                raise SourceFailed(f"{src.name}: {reason}: {detail}") from None
            ledger.apply(src.name, d.covered, d.batch.days)
            if d.batch.rejected:
                print(
                    f"{src.name}: skipped {sum(d.batch.rejected.values())} bad rows "
                    f"{dict(d.batch.rejected)}; first: {'; '.join(d.batch.first_errors)}",
                    file=sys.stderr,
                )
    finally:
        for src in sources:
            await src.aclose()
    month = figures.month(ledger, start, today)
    previous = figures.month(ledger, figures.previous_month(start), today)
    return report.build(cfg, month, previous, active_users)


def active_users_from_prometheus(url: str) -> int | None:
    resp = httpx.get(
        f"{url.rstrip('/')}/api/v1/query", params={"query": ACTIVE_USERS_QUERY}, timeout=10
    )
    resp.raise_for_status()
    result = resp.json()["data"]["result"]
    return int(float(result[0]["value"][1])) if result else None
