"""Command line: `python -m exporters.uptime --config.file uptime.yaml --web.listen-address :9701`."""

from __future__ import annotations

import argparse
import logging

from exporters.common.cli import add_common_flags, load_for_cli, run, serve
from exporters.common.logging import configure
from exporters.uptime.app import make_app
from exporters.uptime.config import UptimeConfig
from exporters.uptime.scheduler import plan

log = logging.getLogger("exporters.uptime")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m exporters.uptime", description=__doc__)
    add_common_flags(p, 9701)
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(args.log_level, args.log_format)
    loaded = load_for_cli(args.config, UptimeConfig, plan)
    if loaded is None:
        return 2
    cfg, _ = loaded
    if args.check_config:
        print(f"{args.config}: OK ({len(cfg.targets)} targets)")
        return 0
    host, port = args.listen
    log.info("config loaded", extra={"targets": len(cfg.targets), "listen": f"{host}:{port}"})
    run(serve(lambda: make_app(cfg), host, port, log))
    return 0
