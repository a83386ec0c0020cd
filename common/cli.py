"""Flags every wsinfra process shares, in Prometheus style."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from common.config import ConfigError, describe_os_error, load_config, read_secret_files
from common.logging import configure
from common.web import QuietAppRunner

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def listen_address(value: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (127.0.0.1)."""
    host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} must be host:port (port 0-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ListenError(Exception):
    """The listen address cannot be bound; the message says which and why, for `error: …`."""


_LISTEN_HINTS = {
    errno.EADDRINUSE: "another process is listening there",
    errno.EADDRNOTAVAIL: "not an address of this host",
}


async def listen(runner: web.BaseRunner, host: str, port: int) -> web.TCPSite:
    """Start a TCPSite; an address in use, not permitted or not of this host (any OSError of
    the bind) becomes a ListenError. The caller cleans the runner up, as after serving."""
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        if isinstance(exc, socket.gaierror) or not exc.errno:
            reason = exc.strerror or str(exc)
        else:
            reason = os.strerror(exc.errno).lower()
            hint = _LISTEN_HINTS.get(exc.errno)
            if exc.errno == errno.EACCES and port < 1024:
                hint = "ports below 1024 need privileges"
            if hint:
                reason += f" ({hint})"
        raise ListenError(f"cannot listen on {format_address(host, port)}: {reason}") from None
    return site


def add_common_flags(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument("--config.file", dest="config", type=Path, required=True)
    parser.add_argument(
        "--web.listen-address",
        dest="listen",
        type=listen_address,
        default=("127.0.0.1", default_port),
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=["debug", "info", "warning", "error"],
    )
    parser.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"]
    )


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run the exporter's main coroutine on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def serve(
    make_app: Callable[[], web.Application],
    host: str,
    port: int,
    log: logging.Logger,
    **runner_kwargs: Any,
) -> None:
    """Serve until a signal; the app is built here, inside the loop its tasks will use."""
    web_runner = QuietAppRunner(make_app(), access_log=None, handle_signals=True, **runner_kwargs)
    await web_runner.setup()
    try:
        await listen(web_runner, host, port)
        log.info("listening", extra={"address": f"http://{format_address(host, port)}/metrics"})
        await asyncio.Event().wait()
    finally:
        await web_runner.cleanup()


def load_for_cli(
    path: Path, model: type[M], prepare: Callable[[M, dict[str, str]], T]
) -> tuple[M, T] | None:
    """Load the config, read every secret file it names (common.config.read_secret_files:
    {dotted key: value}) and run `prepare` on both, so a bad file fails before any port is
    bound. On failure print why, with the file and key (never a secret), and return None: the
    caller exits with code 2."""
    try:
        cfg = load_config(path, model)
        return cfg, prepare(cfg, read_secret_files(cfg, path))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
    except OSError as exc:
        # Not a secret file named by a key (read_secret_files reports those with their keys):
        # a file `prepare` read itself, e.g. one that vanished since. Name it at least.
        print(
            f"invalid config {path}:\n  {path}: cannot read {describe_os_error(exc)}",
            file=sys.stderr,
        )
    return None


def exporter_main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str | None,
    default_port: int,
    model: type[M],
    prepare: Callable[[M, dict[str, str]], T],
    summary: Callable[[M, T], str],
    make_app: Callable[[M, T], web.Application],
    log: logging.Logger,
    **runner_kwargs: Any,
) -> int:
    """What every exporter's `main` does: flags, logging, the config and its secrets checked
    before a port is bound (exit 2 listing what is wrong), --check-config, then serve.
    `prepare` gets the config and its secrets by dotted key (see load_for_cli)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_common_flags(parser, default_port)
    parser.add_argument("--check-config", action="store_true", help="validate the config and exit")
    args = parser.parse_args(argv)
    configure(args.log_level, args.log_format)
    loaded = load_for_cli(args.config, model, prepare)
    if loaded is None:
        return 2
    cfg, extra = loaded
    return check_or_serve(args, cfg, extra, summary, make_app, log, **runner_kwargs)


def check_or_serve(
    args: argparse.Namespace,
    cfg: M,
    extra: T,
    summary: Callable[[M, T], str],
    make_app: Callable[[M, T], web.Application],
    log: logging.Logger,
    **runner_kwargs: Any,
) -> int:
    """A loaded service's last step: with --check-config say OK and exit 0, otherwise serve on
    --web.listen-address until stopped (exit 2 when the address cannot be bound)."""
    text = summary(cfg, extra)
    if args.check_config:
        print(f"{args.config}: OK ({text})")
        return 0
    host, port = args.listen
    log.info("config loaded", extra={"summary": text, "listen": format_address(host, port)})
    try:
        run(serve(lambda: make_app(cfg, extra), host, port, log, **runner_kwargs))
    except ListenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
