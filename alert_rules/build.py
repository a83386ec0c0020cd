"""`python -m alert_rules build [--check]`: render rule templates into alert_rules/generated/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alert_rules.config import CONFIG, load_rules
from alert_rules.render import RuleError, render_all
from common.config import ConfigError

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
GENERATED = HERE / "generated"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alert_rules")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="render templates into generated/")
    b.add_argument(
        "--check", action="store_true", help="fail if generated/ is stale; write nothing"
    )
    b.add_argument(
        "--config", type=Path, default=CONFIG, help="the rules' knobs (default: %(default)s)"
    )
    b.add_argument("--out", type=Path, default=GENERATED)
    args = ap.parse_args(argv)
    try:
        rendered = render_all(TEMPLATES, load_rules(args.config))
    except ConfigError as exc:  # names the file and every bad key
        print(exc, file=sys.stderr)
        return 2
    except RuleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wanted = {r.name: r.text for r in rendered}
    return sync_dir(
        args.out,
        "*.yml",
        wanted,
        check=args.check,
        what="rule files",
        rebuild="python -m alert_rules build",
    )


def sync_dir(
    out: Path, pattern: str, wanted: dict[str, str], *, check: bool, what: str, rebuild: str
) -> int:
    """Make `out` hold exactly `wanted` (file name → text) among files matching `pattern`.

    With `check`, write nothing and return 1 if anything differs (CI's "generated files are
    current"); otherwise write, delete what is no longer generated, and return 0.
    """
    existing = (
        {p.name: p.read_text(encoding="utf-8") for p in out.glob(pattern)} if out.exists() else {}
    )
    stale = sorted(n for n in wanted.keys() | existing.keys() if wanted.get(n) != existing.get(n))
    if check:
        if stale:
            print(f"stale {what} in {out}: {', '.join(stale)}; run `{rebuild}`", file=sys.stderr)
            return 1
        print(f"{out}: {len(wanted)} {what} up to date")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for name in existing.keys() - wanted.keys():
        (out / name).unlink()
    for name, text in wanted.items():
        (out / name).write_text(text, encoding="utf-8")
    print(
        f"{out}: wrote {len(wanted)} {what}" + (f" ({', '.join(stale)} changed)" if stale else "")
    )
    return 0
