"""Command line: `python -m exporters.supabase --config.file supabase.yaml --web.listen-address :9704`."""

from __future__ import annotations

import logging

from common.cli import exporter_main
from exporters.supabase.app import SupabaseExporter, make_app
from exporters.supabase.config import SupabaseConfig

log = logging.getLogger("exporters.supabase")
DEFAULT_PORT = 9704


def summary(cfg: SupabaseConfig, _: None) -> str:
    names = ", ".join(d.name for d in cfg.databases) or "-"
    api = f"; Management API at {cfg.management.base_url}" if cfg.management else ""
    # Never the conninfo (it names hosts and users), only that backups are recorded.
    record = "; backups mirrored into backup_status" if cfg.record else ""
    return f"{len(cfg.databases)} databases: {names}{api}{record}"


def main(argv: list[str] | None = None) -> int:
    return exporter_main(
        argv,
        prog="python -m exporters.supabase",
        description=__doc__,
        default_port=DEFAULT_PORT,
        model=SupabaseConfig,
        # Secrets are only checked at start: a database password is read again at each new
        # connection, the Management API token whenever its file changes.
        prepare=lambda cfg, _: None,
        summary=summary,
        make_app=lambda cfg, _: make_app(SupabaseExporter(cfg)),
        log=log,
    )
