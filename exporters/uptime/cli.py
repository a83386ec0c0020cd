"""Command line: `python -m exporters.uptime --config.file uptime.yaml --web.listen-address :9701`."""

from __future__ import annotations

import argparse
import logging
import sys

from exporters.common.cli import add_common_flags, run, serve
from exporters.common.config import ConfigError, load_config
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
    try:
        cfg = load_config(args.config, UptimeConfig)
        plan(cfg)  # reads secret files now, so a missing one fails before any port is bound
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"invalid config {args.config}: cannot read secret file: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    if args.check_config:
        print(f"{args.config}: OK ({len(cfg.targets)} targets)")
        return 0
    host, port = args.listen
    log.info("config loaded", extra={"targets": len(cfg.targets), "listen": f"{host}:{port}"})
    run(serve(lambda: make_app(cfg), host, port, log))
    return 0
