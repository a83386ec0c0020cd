"""`python -m recorder migrate|serve --config.file recorder.yaml [--web.listen-address host:port]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

import psycopg

from common import postgres, runbook_pages
from common.cli import ListenError, add_common_flags, listen
from common.config import ConfigError, describe_os_error, load_config
from common.logging import configure
from common.web import QuietAppRunner
from recorder.app import make_app
from recorder.config import RecorderConfig, Secrets
from recorder.journal import Journal
from recorder.store import PgStore
from schema import migrate

log = logging.getLogger("recorder")


async def _migrate(cfg: RecorderConfig) -> int:
    kwargs = postgres.connect_kwargs(cfg.database, "wsinfra-recorder-migrate")
    try:
        async with await psycopg.AsyncConnection.connect(cfg.database.conninfo, **kwargs) as conn:
            applied = await migrate.apply(conn)
    except psycopg.OperationalError as exc:
        # libpq's message names host and port, never the password.
        print(f"error: cannot connect to the database: {exc}".strip(), file=sys.stderr)
        return 1
    except migrate.MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"migrations: applied {applied or 'none'}; at head {migrate.head()}")
    return 0


async def _serve(
    cfg: RecorderConfig, secrets: Secrets, journal: Journal, host: str, port: int
) -> None:
    store = PgStore(cfg.database)
    await store.open()
    if journal.pending:
        log.info("journal has records to apply", extra={"records": journal.pending})
    app = make_app(
        store,
        secrets,
        max_body_bytes=cfg.webhooks.max_body_bytes,
        vercel_verify_code=cfg.webhooks.vercel_verify_code,
        journal=journal,
        runbooks=cfg.runbooks.directory or runbook_pages.DEFAULT_DIRECTORY,
    )
    runner = QuietAppRunner(app, access_log=None)
    await runner.setup()
    try:
        await listen(runner, host, port)
        log.info("listening", extra={"address": f"http://{host}:{port}/"})
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m recorder")
    ap.add_argument("command", choices=["migrate", "serve"])
    add_common_flags(ap, 9700)
    args = ap.parse_args(argv)
    configure(args.log_level, args.log_format)
    try:
        cfg = load_config(args.config, RecorderConfig)
        secrets = Secrets.read(cfg, args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command == "migrate":
        return asyncio.run(_migrate(cfg))
    if cfg.runbooks.directory is not None and not cfg.runbooks.directory.is_dir():
        print(
            f"invalid config {args.config}: runbooks.directory: "
            f"{cfg.runbooks.directory} is not a directory",
            file=sys.stderr,
        )
        return 2
    host, port = args.listen
    journal = Journal(cfg.journal.directory, cfg.journal.max_bytes)
    try:
        journal.open()
    except OSError as exc:
        print(
            f"invalid config {args.config}: journal.directory: {describe_os_error(exc)}",
            file=sys.stderr,
        )
        return 2
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(cfg, secrets, journal, host, port))
    except ListenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
