"""Command line: `python -m exporters.uptime --config.file uptime.yaml --web.listen-address :9701`."""

from __future__ import annotations

import logging

from common.cli import exporter_main
from exporters.uptime.app import make_app
from exporters.uptime.config import UptimeConfig
from exporters.uptime.scheduler import plan

log = logging.getLogger("exporters.uptime")


def main(argv: list[str] | None = None) -> int:
    return exporter_main(
        argv,
        prog="python -m exporters.uptime",
        description=__doc__,
        default_port=9701,
        model=UptimeConfig,
        # exporter_main checks the secret files; plan() here (the scheduler plans again when it
        # starts) makes a target that cannot be planned fail before any port is bound too.
        prepare=lambda cfg, _: plan(cfg),
        summary=lambda cfg, _: f"{len(cfg.targets)} targets",
        make_app=lambda cfg, _: make_app(cfg),
        log=log,
    )
