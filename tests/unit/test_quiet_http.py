"""What an outsider can make the services write: a request aiohttp cannot parse is refused
without repeating its bytes (a token among them) in the answer or the log, and a log value from
outside can never break a logfmt line or forge a key."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from common.logging import LogfmtFormatter
from common.web import QuietAppRunner
from compose.processes import free_port

TOKEN = "machine-token-that-must-never-be-logged-0123456789"


@pytest.fixture
async def served() -> AsyncIterator[int]:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = QuietAppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def _answer(port: int, request: bytes) -> bytes:
    """Everything the server sends back on one connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def _raw(port: int, request: bytes) -> tuple[int, bytes]:
    head, _, body = (await _answer(port, request)).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "request_bytes",
    [
        # A header over aiohttp's 8190-byte limit, carrying a token.
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"x" * 9000
        + b"\r\n\r\n",
        # A request line over the limit, carrying it in the query.
        b"GET /?t=" + TOKEN.encode() + b"y" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        # A method that is no method, after a first good request on the connection.
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nF\x00O /" + TOKEN.encode() + b" HTTP/1.1\r\n\r\n",
    ],
)
async def test_an_unparseable_request_is_refused_without_repeating_it(
    served: int, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await _answer(served, request_bytes)
    # The refusal (after the pipelined case's good answer) is a 400, and nothing repeats it.
    assert b" 400 Bad Request\r\n" in answer
    assert TOKEN.encode() not in answer
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert record.exc_info is None, record.getMessage()
        assert TOKEN not in json.dumps(vars(record), default=str)
    refused = [r for r in caplog.records if r.getMessage() == "malformed HTTP request refused"]
    assert refused, [r.getMessage() for r in caplog.records]


async def test_the_refusal_is_json(served: int) -> None:
    status, body = await _raw(
        served, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * 9000 + b"\r\n\r\n"
    )
    assert status == 400
    assert json.loads(body) == {
        "error": "invalid_request",
        "reason": "malformed HTTP request (400 Bad Request)",
    }


def _line(**extra: object) -> str:
    record = logging.makeLogRecord({"msg": "m", "levelno": 20, "levelname": "INFO", **extra})
    return LogfmtFormatter().format(record)


def test_logfmt_values_from_outside_stay_on_one_line_and_one_key() -> None:
    forged = 'Forge\nts=2026 level=error logger=api.app msg="forged"\tx'
    line = _line(alertname=forged)
    assert "\n" not in line
    assert "\t" not in line
    assert line.endswith("alertname=" + json.dumps(forged))
    # A quote, a backslash or '=' alone is quoted too; a plain token stays bare.
    assert _line(a='x"y').endswith('a="x\\"y"')
    assert _line(a="k=v").endswith('a="k=v"')
    assert _line(a="back\\slash").endswith('a="back\\\\slash"')
    assert _line(a="UptimeTargetDown").endswith("a=UptimeTargetDown")
    assert _line(a="").endswith('a=""')
