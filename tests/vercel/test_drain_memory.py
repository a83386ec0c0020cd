"""Unsigned and wrongly signed drain bodies cost the exporter a small fixed buffer each: ten
concurrent 60 MB posts of each kind against the real exporter process leave its peak memory
flat. The senders stream their bodies in chunks (a raw socket, as a client that reads the answer
while it sends would), so the test does not hold 600 MB either."""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fakes.vercel_drains import encode, log_records, sign
from tests.vercel.helpers import PROJECT_ID, SECRETS, samples, write_config

pytestmark = pytest.mark.integration

BODY = 60_000_000
CHUNK = 256 * 1024
CONCURRENT = 10
MAX_GROWTH = 50 * 1024 * 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def _reset_peak(pid: int) -> bool:
    """Linux resets VmHWM (peak RSS) to the current RSS on `5` in clear_refs."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def post_streamed(port: int, path: str, signature: str | None, size: int) -> int:
    """POST `size` bytes in chunks, reading the answer while sending: the status code."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {size}",
        *([f"x-vercel-signature: {signature}"] if signature else []),
        "Connection: close",
        "",
        "",
    ]
    writer.write("\r\n".join(head).encode())
    status_line = asyncio.create_task(reader.readline())
    chunk = b"[" + b" " * (CHUNK - 1)
    sent = 0
    try:
        while sent < size and not status_line.done():
            piece = chunk[: size - sent]
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
    except ConnectionError:
        pass  # refused unread: the exporter answered and closed while we were sending
    try:
        line = await asyncio.wait_for(status_line, timeout=20)
    finally:
        writer.close()
    return int(line.split()[1])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def test_unsigned_and_wrongly_signed_60mb_posts_leave_memory_flat(tmp_path: Path) -> None:
    from compose.processes import free_port, spawn, wait_ready

    spool = tmp_path / "spool"
    spool.mkdir()
    port = free_port()
    proc = spawn(
        [
            sys.executable,
            "-m",
            "exporters.vercel",
            "--config.file",
            str(write_config(tmp_path, token=False, drains={"spool_dir": str(spool)})),
            "--web.listen-address",
            f"127.0.0.1:{port}",
        ],
        tmp_path / "log",
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", timeout=20, proc=proc)
        good = encode(log_records(50, PROJECT_ID), "json")
        wrong = sign("not-the-secret", b"x")

        # Warm up every path (accepted, refused small, refused spooled) before measuring.
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/drains/logs",
            data=good,
            headers={
                "Content-Type": "application/json",
                "x-vercel-signature": sign(SECRETS["logs"], good),
            },
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            assert resp.status == 200

        async def attack() -> tuple[list[int], list[int], int]:
            assert await post_streamed(port, "/drains/logs", wrong, 1000) == 403
            assert await post_streamed(port, "/drains/logs", wrong, 3 << 20) == 403
            rss_before = _status_kb(proc.pid, "VmRSS")
            if not _reset_peak(proc.pid):
                rss_before = _status_kb(proc.pid, "VmHWM")
            unsigned = await asyncio.gather(
                *(post_streamed(port, "/drains/logs", None, BODY) for _ in range(CONCURRENT))
            )
            signed = await asyncio.gather(
                *(post_streamed(port, "/drains/logs", wrong, BODY) for _ in range(CONCURRENT))
            )
            return unsigned, signed, rss_before

        start = time.monotonic()
        unsigned, wrongly_signed, rss_before = asyncio.run(attack())
        elapsed = time.monotonic() - start
        peak = _status_kb(proc.pid, "VmHWM")
        assert unsigned == [403] * CONCURRENT
        assert wrongly_signed == [403] * CONCURRENT
        growth = (peak - rss_before) * 1024
        assert growth < MAX_GROWTH, f"peak RSS grew by {growth / 2**20:.1f} MiB"
        text = _scrape(port)
        refused = samples(text)[
            (
                "vercel_drain_deliveries_total",
                frozenset({("drain", "logs"), ("outcome", "bad_signature")}),
            )
        ]
        assert refused == 2 + 2 * CONCURRENT
        assert list(spool.iterdir()) == []  # spooled bodies leave nothing behind
        assert elapsed < 30
    finally:
        proc.terminate()
        proc.wait(timeout=10)
