"""The recorder's journal on its own: durable order, a torn tail cut off, bounded, numbering that
survives restarts and full drains."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.journal import Journal, JournalFull


def reopen(path: Path, max_bytes: int = 1 << 20) -> Journal:
    j = Journal(path, max_bytes)
    j.open()
    return j


async def test_records_come_back_in_order_after_a_restart(tmp_path: Path) -> None:
    j = reopen(tmp_path)
    seqs = [await j.append("alertmanager", {"n": i}, f"body {i}".encode()) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    again = reopen(tmp_path)
    assert again.id == j.id
    records = [again.read(e) for e in again.entries]
    assert [(r.seq, r.kind, r.meta, r.body) for r in records] == [
        (i + 1, "alertmanager", {"n": i}, f"body {i}".encode()) for i in range(5)
    ]
    assert again.bytes == j.bytes


async def test_a_torn_last_record_is_cut_off_and_appends_go_on(tmp_path: Path) -> None:
    j = reopen(tmp_path)
    await j.append("vercel", {}, b"one")
    await j.append("vercel", {}, b"two")
    (segment,) = tmp_path.glob("*.jnl")
    whole = segment.read_bytes()
    segment.write_bytes(whole[:-2])  # the process died mid-write of record 2
    again = reopen(tmp_path)
    assert [again.read(e).body for e in again.entries] == [b"one"]
    assert again.torn_records == 1
    assert await again.append("vercel", {}, b"three") == 2
    assert [e.seq for e in reopen(tmp_path).entries] == [1, 2]


async def test_a_corrupt_record_is_not_read_as_data(tmp_path: Path) -> None:
    j = reopen(tmp_path)
    await j.append("github", {}, b"payload")
    (segment,) = tmp_path.glob("*.jnl")
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert reopen(tmp_path).entries == []


async def test_full_journal_refuses_and_frees_space_as_records_apply(tmp_path: Path) -> None:
    j = Journal(tmp_path, max_bytes=400)  # two records of about 190 bytes
    j.open()
    await j.append("alertmanager", {}, b"x" * 100)
    await j.append("alertmanager", {}, b"x" * 100)
    with pytest.raises(JournalFull):
        await j.append("alertmanager", {}, b"x" * 100)
    j.forget_through(1)
    assert await j.append("alertmanager", {}, b"x" * 100) == 3


async def test_numbering_survives_a_full_drain_and_a_restart(tmp_path: Path) -> None:
    # After everything is applied the files are gone, but a new record must not reuse a
    # number that PostgreSQL already marks as applied.
    j = Journal(tmp_path, 1 << 20, segment_bytes=64)
    j.open()
    for i in range(4):
        await j.append("alertmanager", {}, f"{i}".encode() * 30)
    assert len(list(tmp_path.glob("*.jnl"))) >= 2  # rotated
    j.forget_through(4)
    assert (j.pending, j.bytes) == (0, 0)
    assert all(p.stat().st_size == 0 for p in tmp_path.glob("*.jnl"))
    again = reopen(tmp_path)
    assert await again.append("alertmanager", {}, b"next") == 5


async def test_forgetting_part_keeps_the_rest(tmp_path: Path) -> None:
    j = Journal(tmp_path, 1 << 20, segment_bytes=64)
    j.open()
    for i in range(6):
        await j.append("alertmanager", {}, str(i).encode() * 40)
    j.forget_through(3)
    again = reopen(tmp_path)
    assert [again.read(e).body[:1] for e in again.entries] == [b"3", b"4", b"5"]
