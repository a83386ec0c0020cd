"""Command line: `python -m exporters.vercel --config.file vercel.yaml --web.listen-address :9703`."""

from __future__ import annotations

import argparse
import logging

from exporters.common.cli import add_common_flags, load_for_cli, run, serve
from exporters.common.logging import configure
from exporters.vercel.app import Exporter, make_app
from exporters.vercel.config import VercelConfig, read_secrets

log = logging.getLogger("exporters.vercel")
DEFAULT_PORT = 9703


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m exporters.vercel", description=__doc__)
    add_common_flags(p, DEFAULT_PORT)
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(args.log_level, args.log_format)
    loaded = load_for_cli(args.config, VercelConfig, read_secrets)
    if loaded is None:
        return 2
    cfg, secrets = loaded
    drains = [n for n in ("logs", "traces", "speed_insights") if getattr(cfg.drains, n)]
    summary = (
        f"{len(cfg.projects)} projects, deployments polling "
        f"{'on' if 'token' in secrets else 'off (no api.token_file)'}, "
        f"drains: {', '.join(drains) or 'none'}"
    )
    if args.check_config:
        print(f"{args.config}: OK ({summary})")
        return 0
    host, port = args.listen
    log.info("config loaded", extra={"summary": summary, "listen": f"{host}:{port}"})
    # aiohttp would gunzip request bodies itself, unbounded and before we could check a
    # signature made over the compressed bytes: drain bodies are decompressed by us.
    run(serve(lambda: make_app(Exporter(cfg, secrets)), host, port, log, auto_decompress=False))
    return 0
