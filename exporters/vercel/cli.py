"""Command line: `python -m exporters.vercel --config.file vercel.yaml --web.listen-address :9703`."""

from __future__ import annotations

import logging

from common.cli import exporter_main
from exporters.vercel.app import VercelExporter, make_app
from exporters.vercel.config import VercelConfig, secrets_by_name

log = logging.getLogger("exporters.vercel")
DEFAULT_PORT = 9703


def summary(cfg: VercelConfig, secrets: dict[str, str]) -> str:
    drains = [n for n in ("logs", "traces", "speed_insights") if getattr(cfg.drains, n)]
    return (
        f"{len(cfg.projects)} projects, deployments polling "
        f"{'on' if 'token' in secrets else 'off (no api.token_file)'}, "
        f"drains: {', '.join(drains) or 'none'}"
    )


def main(argv: list[str] | None = None) -> int:
    return exporter_main(
        argv,
        prog="python -m exporters.vercel",
        description=__doc__,
        default_port=DEFAULT_PORT,
        model=VercelConfig,
        prepare=lambda _, values: secrets_by_name(values),
        summary=summary,
        make_app=lambda cfg, secrets: make_app(VercelExporter(cfg, secrets)),
        log=log,
        # aiohttp would gunzip request bodies itself, unbounded and before we could check a
        # signature made over the compressed bytes: drain bodies are decompressed by us.
        auto_decompress=False,
        # A delivery refused on its headers (unsigned, too large, wrong type) is answered at
        # once; aiohttp then reads and discards what the sender still has in flight so that
        # the answer is not lost to a TCP reset, for 2 s instead of its default 10.
        lingering_time=2.0,
    )
