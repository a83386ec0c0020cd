"""`python -m dashboards build [--check]`: write generated/<uid>.json for every dashboard."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dashboards import deployments, overview, slo, uptime, vercel

HERE = Path(__file__).resolve().parent
GENERATED = HERE / "generated"
MODULES = (overview, slo, uptime, vercel, deployments)


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
    wanted = render()
    existing = (
        {p.name: p.read_text(encoding="utf-8") for p in args.out.glob("*.json")}
        if args.out.exists()
        else {}
    )
    stale = sorted(n for n in wanted.keys() | existing.keys() if wanted.get(n) != existing.get(n))
    if args.check:
        if stale:
            print(
                f"stale dashboards in {args.out}: {', '.join(stale)}; run `python -m dashboards build`",
                file=sys.stderr,
            )
            return 1
        print(f"{args.out}: {len(wanted)} dashboards up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in existing.keys() - wanted.keys():
        (args.out / name).unlink()
    for name, text in wanted.items():
        (args.out / name).write_text(text, encoding="utf-8")
    print(
        f"{args.out}: wrote {len(wanted)} dashboards"
        + (f" ({', '.join(stale)} changed)" if stale else "")
    )
    return 0
