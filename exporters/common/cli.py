"""Flags every wsinfra process shares, in Prometheus style."""

from __future__ import annotations

import argparse
from pathlib import Path


def listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} must be host:port")
    return host or "127.0.0.1", int(port)


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
