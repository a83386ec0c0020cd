"""`python -m api serve --config.file api.yaml [--web.listen-address host:port] [--check-config]`."""

from __future__ import annotations

import argparse
import logging

from api.app import make_app
from api.config import ApiConfig, Secrets
from common.cli import add_common_flags, check_or_serve, load_for_cli
from common.logging import configure

log = logging.getLogger("api")

DEFAULT_PORT = 9706


def summary(cfg: ApiConfig, secrets: Secrets) -> str:
    keys = "HS256" + (f" + JWKS {cfg.auth.jwks_url}" if cfg.auth.jwks_url else "")
    pager = "" if cfg.pagerduty is None else f", PagerDuty webhooks as {cfg.pagerduty.machine}"
    return (
        f"auth {keys}, issuer {cfg.auth.issuer}, {len(secrets.machines)} machine token(s), "
        f"alertmanager {cfg.alertmanager_url}{pager}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api",
        description="The operator API: /api/infrastructure/ over PostgreSQL and Alertmanager.",
    )
    parser.add_argument("command", choices=["serve"])
    add_common_flags(parser, DEFAULT_PORT)
    parser.add_argument("--check-config", action="store_true", help="validate the config and exit")
    args = parser.parse_args(argv)
    configure(args.log_level, args.log_format)
    # Config and every secret file are checked before a port is bound (exit 2 naming each bad
    # key and file, never a secret).
    loaded = load_for_cli(
        args.config, ApiConfig, lambda cfg, values: Secrets.from_values(cfg, values, args.config)
    )
    if loaded is None:
        return 2
    cfg, secrets = loaded
    return check_or_serve(args, cfg, secrets, summary, make_app, log)
