"""A durable local journal of accepted webhooks that PostgreSQL has not taken yet.

Why: Alertmanager sends a resolved-only notification only for a group it has notified before, so
answering 503 while the database is down loses every alert that fires and resolves within the
outage. The recorder instead appends a valid notification here (write, fsync, then 200) and a
background task applies the journal to PostgreSQL in order once it is reachable.

Exactly once: each record has a sequence number; applying a record advances this journal's row in
`recorder_journal_position` in the same transaction as the record's writes, so a record applied
before a crash is recognised and skipped after it.

On disk: segment files `<first seq, 20 digits>.jnl` of records
`[u32 length][u32 crc32][u64 seq][JSON header]\\n[body]`. A torn last record (the process died
mid-append, before its 200 was sent) fails its length or CRC check and is cut off at open. An
empty segment file keeps the next sequence number across restarts. `journal.id` names the journal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_HEAD = struct.Struct(">IIQ")
_SUFFIX = ".jnl"


class JournalFull(Exception):
    """Appending would pass the journal's size limit."""


class JournalUnavailable(Exception):
    """The journal's disk refused the write (full, read-only, gone)."""


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    path: Path
    offset: int
    size: int  # bytes on disk, header included


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    kind: str
    meta: dict[str, Any]
    received_at: float
    body: bytes


def _encode(seq: int, kind: str, meta: dict[str, Any], received_at: float, body: bytes) -> bytes:
    head = json.dumps({"kind": kind, "meta": meta, "received_at": received_at}).encode()
    payload = head + b"\n" + body
    return _HEAD.pack(len(payload), zlib.crc32(payload), seq) + payload


def _decode(seq: int, payload: bytes) -> Record:
    head, _, body = payload.partition(b"\n")
    doc = json.loads(head)
    return Record(seq, str(doc["kind"]), dict(doc["meta"]), float(doc["received_at"]), body)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 8 << 20) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.id = ""
        self.entries: list[Entry] = []
        self.bytes = 0
        self.next_seq = 1
        self.torn_records = 0
        self._current: Path | None = None
        self._oldest: tuple[int, float] | None = None
        self._lock = asyncio.Lock()

    # --- opening ------------------------------------------------------------------------------

    def open(self) -> None:
        """Read what an earlier run left; cut off a torn last record. Raises OSError."""
        self.dir.mkdir(parents=True, exist_ok=True)
        id_file = self.dir / "journal.id"
        if not id_file.exists():
            tmp = id_file.with_suffix(".tmp")
            tmp.write_text(uuid.uuid4().hex + "\n", encoding="ascii")
            os.replace(tmp, id_file)
            _fsync_dir(self.dir)
        self.id = id_file.read_text(encoding="ascii").strip()
        segments = sorted(self.dir.glob(f"*{_SUFFIX}"))
        for path in segments:
            self.next_seq = max(self.next_seq, int(path.stem))
            self._scan(path)
        self._current = segments[-1] if segments else None

    def _scan(self, path: Path) -> None:
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            if len(data) - offset < _HEAD.size:
                break
            length, crc, seq = _HEAD.unpack_from(data, offset)
            end = offset + _HEAD.size + length
            if end > len(data) or zlib.crc32(data[offset + _HEAD.size : end]) != crc:
                break
            self.entries.append(Entry(seq, path, offset, end - offset))
            self.bytes += end - offset
            self.next_seq = max(self.next_seq, seq + 1)
            offset = end
        if offset < len(data):
            # Never acknowledged: the 200 is sent only after the fsync that did not complete.
            self.torn_records += 1
            log.warning("journal: torn record cut off", extra={"segment": path.name})
            with path.open("r+b") as f:
                f.truncate(offset)
                os.fsync(f.fileno())

    # --- appending ----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self.entries)

    def oldest_received_at(self) -> float | None:
        """Read from disk once per oldest record, not at every scrape that asks."""
        if not self.entries:
            return None
        first = self.entries[0]
        if self._oldest is None or self._oldest[0] != first.seq:
            self._oldest = (first.seq, self.read(first).received_at)
        return self._oldest[1]

    async def append(self, kind: str, meta: dict[str, Any], body: bytes) -> int:
        """Write and fsync one record; its sequence number once it is durable."""
        async with self._lock:
            seq = self.next_seq
            data = _encode(seq, kind, meta, time.time(), body)
            if self.bytes + len(data) > self.max_bytes:
                raise JournalFull(f"journal holds {self.bytes} of {self.max_bytes} bytes")
            path = self._segment_for(len(data), seq)
            try:
                with path.open("ab") as f:
                    offset = f.tell()
                    try:
                        f.write(data)
                        f.flush()
                        # fsync off the event loop; the lock keeps appends in order.
                        await asyncio.to_thread(os.fsync, f.fileno())
                    except OSError:
                        f.truncate(offset)
                        raise
            except OSError as exc:
                raise JournalUnavailable(exc.strerror or type(exc).__name__) from None
            self.entries.append(Entry(seq, path, offset, len(data)))
            self.bytes += len(data)
            self.next_seq = seq + 1
            return seq

    def _segment_for(self, size: int, seq: int) -> Path:
        cur = self._current
        if cur is None or (cur.exists() and cur.stat().st_size + size > self.segment_bytes):
            cur = self.dir / f"{seq:020d}{_SUFFIX}"
            cur.touch()
            _fsync_dir(self.dir)
            self._current = cur
        return cur

    # --- reading and forgetting ---------------------------------------------------------------

    def read(self, entry: Entry) -> Record:
        with entry.path.open("rb") as f:
            f.seek(entry.offset + _HEAD.size)
            return _decode(entry.seq, f.read(entry.size - _HEAD.size))

    def forget_through(self, seq: int) -> None:
        """Drop records up to `seq` (applied); delete segments that hold nothing pending."""
        kept = [e for e in self.entries if e.seq > seq]
        self.bytes -= sum(e.size for e in self.entries if e.seq <= seq)
        self.entries = kept
        live = {e.path for e in kept}
        for path in sorted(self.dir.glob(f"*{_SUFFIX}")):
            if path not in live and path != self._current:
                path.unlink(missing_ok=True)
        if not kept and self._current is not None and self._current.stat().st_size > 0:
            # Everything applied: start an empty segment named by the next sequence number, so
            # numbering goes on after a restart, and remove the old one.
            old = self._current
            self._current = self.dir / f"{self.next_seq:020d}{_SUFFIX}"
            self._current.touch()
            _fsync_dir(self.dir)
            old.unlink(missing_ok=True)
