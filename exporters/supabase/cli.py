"""Command line: `python -m exporters.supabase --config.file supabase.yaml --web.listen-address :9704`."""

from __future__ import annotations

import argparse
import logging

from exporters.common.cli import add_common_flags, load_for_cli, run, serve
from exporters.common.logging import configure
from exporters.supabase.app import Exporter, make_app
from exporters.supabase.config import SupabaseConfig, read_secrets

log = logging.getLogger("exporters.supabase")
DEFAULT_PORT = 9704


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m exporters.supabase", description=__doc__)
    add_common_flags(p, DEFAULT_PORT)
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(args.log_level, args.log_format)
    loaded = load_for_cli(args.config, SupabaseConfig, read_secrets)
    if loaded is None:
        return 2
    cfg, passwords = loaded
    summary = (
        f"{len(cfg.databases)} databases: {', '.join(d.name for d in cfg.databases) or '-'}"
        + (f"; Management API at {cfg.management.base_url}" if cfg.management else "")
    )
    if args.check_config:
        print(f"{args.config}: OK ({summary})")
        return 0
    host, port = args.listen
    log.info("config loaded", extra={"summary": summary, "listen": f"{host}:{port}"})
    run(serve(lambda: make_app(Exporter(cfg, passwords)), host, port, log))
    return 0
