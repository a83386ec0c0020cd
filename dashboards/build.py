"""`python -m dashboards build [--check] [--config FILE]`: write generated/<uid>.json for every
dashboard, drawn from the rules' config (alert_rules/config.yaml unless --config says otherwise)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from alert_rules.build import sync_dir
from alert_rules.config import CONFIG
from common.config import ConfigError
from dashboards.rules import use

HERE = Path(__file__).resolve().parent
GENERATED = HERE / "generated"
# Imported by render(), after main() has chosen the config they are drawn from.
MODULES = ("overview", "slo", "uptime", "vercel", "database", "deployments", "costs")


def render() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in MODULES:
        module = importlib.import_module(f"dashboards.{name}")
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
    b.add_argument(
        "--config",
        type=Path,
        default=CONFIG,
        help="the rules' knobs the panels' thresholds come from (default: %(default)s)",
    )
    b.add_argument("--out", type=Path, default=GENERATED)
    args = ap.parse_args(argv)
    try:
        use(args.config)
        wanted = render()
    except ConfigError as exc:  # names the file and every bad key
        print(exc, file=sys.stderr)
        return 2
    return sync_dir(
        args.out,
        "*.json",
        wanted,
        check=args.check,
        what="dashboards",
        rebuild="python -m dashboards build",
    )
