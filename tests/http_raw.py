"""Requests no HTTP library would send: raw header bytes (non-UTF-8, non-ASCII) over a socket."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient


async def raw_post(client: TestClient, path: str, headers: list[bytes], body: bytes) -> int:
    """POST with these exact header lines; the status code of the answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = [f"POST {path} HTTP/1.1".encode(), b"Host: x", f"Content-Length: {len(body)}".encode()]
    writer.write(b"\r\n".join([*head, *headers, b"Connection: close", b"", b""]) + body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status
