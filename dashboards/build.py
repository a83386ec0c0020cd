"""`python -m dashboards build [--check]`: write generated/<uid>.json for every dashboard."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from alert_rules.build import sync_dir
from dashboards import costs, database, deployments, overview, slo, uptime, vercel

HERE = Path(__file__).resolve().parent
GENERATED = HERE / "generated"
MODULES = (overview, slo, uptime, vercel, database, deployments, costs)


def render() -> dict[str, str]:
    out: dict[str, str] = {}
    for module in MODULES:
        doc: dict[str, Any] = module.DASHBOARD.json()
        out[f"{doc['uid']}.json"] = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboards")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write dashboards/generated/*.json")
    b.add_argument(
        "--check", action="store_true", help="fail if generated/ is stale; write nothing"
    )
    b.add_argument("--out", type=Path, default=GENERATED)
    args = ap.parse_args(argv)
    return sync_dir(
        args.out,
        "*.json",
        render(),
        check=args.check,
        what="dashboards",
        rebuild="python -m dashboards build",
    )
