"""What every Vercel drain delivery goes through first: signature, decompression, framing, and the
checks that keep hostile input a 4xx.

Signature: lowercase hex HMAC-SHA1 of the body with the drain's secret, compared in constant
time. Whether Vercel signs the gzip bytes or the plain ones is not documented, so a gzip body
is accepted when either matches. The receiver hashes the body while it streams in (BodyMac) and
keeps it in a Spool: a small buffer, then an unlinked temporary file, so a body that turns out
unsigned or wrongly signed never costs more than a fixed amount of memory, and nothing is
decompressed or parsed before its signature matched (the plain-bytes reading of a gzip body is
checked by streaming the decompression through the HMAC, keeping none of it).

Hostile content: JSON is RFC 8259 (no NaN or Infinity), nesting is bounded by the parser, and a
delivery holding a NUL, a lone surrogate or a string longer than MAX_STRING anywhere is refused
(bad_string); numbers out of range where one is read are refused by each drain (out_of_range).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from common.ingress import (
    BadRequest,
    find_bad_string,
    find_long_string,
    hex_digest_header,
    loads_json,
    may_hold_bad_strings,
)

log = logging.getLogger("exporters.vercel.drains")

GZIP_MAGIC = b"\x1f\x8b"
SIGNATURE_MISMATCH = "signature didn't match"
# Vercel truncates a log message above 256 KB: a string four times that is not from Vercel.
MAX_STRING = 1 << 20
# Output taken from zlib per step: the most a decompression holds that keeps none of its output.
PIECE = 1 << 16


class DrainError(Exception):
    """A delivery we refuse: `status` is the HTTP answer, `outcome` the counted label."""

    def __init__(self, status: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome
        self.reason = reason


def bad_signature() -> DrainError:
    return DrainError(403, "bad_signature", SIGNATURE_MISMATCH)


def signature(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha1).hexdigest()


def parse_signature(given: bytes | str | None) -> bytes | None:
    """The x-vercel-signature header as 40 lowercase hex bytes; None when it cannot match
    (absent, another length, any non-hex byte): such a delivery is refused unread."""
    if given is None:
        return None
    raw = given.encode("utf-8", "surrogateescape") if isinstance(given, str) else given
    return hex_digest_header(raw, 40)


class BodyMac:
    """The HMAC-SHA1 of a body fed to it piece by piece."""

    def __init__(self, secret: bytes) -> None:
        self._mac = hmac.new(secret, digestmod=hashlib.sha1)

    def update(self, data: bytes) -> None:
        self._mac.update(data)

    def matches(self, sig: bytes) -> bool:
        return hmac.compare_digest(self._mac.hexdigest().encode(), sig)


class Spool:
    """The raw bytes of one delivery while its signature is unchecked: the first `memory` bytes
    in memory, everything past that in an unlinked temporary file under `directory` (the
    system's temporary directory when None). Writes are blocking; the receiver runs them in a
    worker thread. Where no file can be made, the body stays in memory (bounded by the
    receiver's max_body_bytes) and a warning is logged once."""

    _warned = False

    def __init__(self, memory: int, directory: Path | None = None) -> None:
        self._memory = memory
        self._dir = directory
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._file: IO[bytes] | None = None
        self._in_memory_only = False
        self.size = 0
        self.head = b""

    def add(self, chunk: bytes) -> bool:
        """Keep `chunk`; True when enough is pending that flush() should run now."""
        if not self.head:
            self.head = chunk[:2]
        elif len(self.head) < 2:
            self.head = (self.head + chunk)[:2]
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        self.size += len(chunk)
        return self._pending_size > self._memory and not self._in_memory_only

    def flush(self) -> None:
        """Move the pending bytes to the file (blocking)."""
        if not self._pending or self._in_memory_only:
            return
        if self._file is None:
            try:
                # Kept open across calls and closed by close(): not a with-block.
                self._file = tempfile.TemporaryFile(  # noqa: SIM115
                    prefix="vercel-drain-", dir=str(self._dir) if self._dir else None
                )
            except OSError as exc:
                self._in_memory_only = True
                if not Spool._warned:
                    Spool._warned = True
                    log.warning(
                        "cannot spool drain bodies to disk: unverified bodies are held in "
                        "memory; set drains.spool_dir to a writable directory",
                        extra={"error": str(exc)},
                    )
                return
        self._file.writelines(self._pending)
        self._pending.clear()
        self._pending_size = 0

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The body again, piece by piece (blocking)."""
        if self._file is not None:
            self._file.seek(0)
            while piece := self._file.read(size):
                yield piece
        yield from self._pending

    def read(self) -> bytes:
        """The whole body (blocking): only for a body whose signature matched. One copy: a
        spooled body's tail joins the file first."""
        if self._file is None:
            return b"".join(self._pending)
        self.flush()
        self._file.seek(0)
        return self._file.read()

    def close(self) -> None:
        self._pending.clear()
        if self._file is not None:
            self._file.close()
            self._file = None


def gunzip_chunks(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """Decompress gzip piece by piece, at most PIECE bytes out per step; more than `limit` bytes
    in all (a bomb) is a 413 as soon as it is seen, without holding the output."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    total = 0
    for chunk in chunks:
        data = chunk
        while True:
            try:
                out = d.decompress(data, PIECE)
            except zlib.error as exc:
                raise DrainError(400, "malformed", f"body is not valid gzip: {exc}") from None
            total += len(out)
            if total > limit:
                raise DrainError(413, "too_large", f"decompressed body exceeds {limit} bytes")
            if out:
                yield out
            data = d.unconsumed_tail
            if d.eof or (not data and len(out) < PIECE):
                break
        if d.eof:
            return
    raise DrainError(400, "malformed", "gzip body is truncated")


def gunzip(raw: bytes, limit: int) -> bytes:
    """Decompress at most `limit` bytes in one piece (a body whose signature matched); a bigger
    (or bomb) body is refused, not buffered."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise DrainError(400, "malformed", f"body is not valid gzip: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise DrainError(413, "too_large", f"decompressed body exceeds {limit} bytes")
    if not d.eof:
        raise DrainError(400, "malformed", "gzip body is truncated")
    return out


def plain_signature_matches(chunks: Iterable[bytes], secret: bytes, sig: bytes, limit: int) -> bool:
    """Whether `sig` is the HMAC of the decompressed body, computed without keeping it."""
    mac = BodyMac(secret)
    for piece in gunzip_chunks(chunks, limit):
        mac.update(piece)
    return mac.matches(sig)


def open_body(raw: bytes, secret: bytes, given: str | bytes | None, limit: int) -> bytes:
    """Check the signature of a body held in memory and return the plain body; raise DrainError
    otherwise. (The receiver streams instead: see BodyMac, Spool.)"""
    sig = parse_signature(given)
    if sig is None:
        raise bad_signature()
    # Sniffed, not taken from Content-Encoding: whether Vercel sets that header for gzip
    # drains is not documented, and no JSON, NDJSON or OTLP protobuf body starts with 1f 8b.
    mac = BodyMac(secret)
    mac.update(raw)
    if mac.matches(sig):
        return gunzip(raw, limit) if raw[:2] == GZIP_MAGIC else raw
    if raw[:2] == GZIP_MAGIC and plain_signature_matches((raw,), secret, sig, limit):
        return gunzip(raw, limit)
    raise bad_signature()


def parse_json(text: bytes) -> Any:
    """RFC 8259 JSON (no NaN/Infinity, bounded nesting), every string storable; DrainError if not."""
    try:
        doc = loads_json(text)
    except BadRequest as exc:
        raise DrainError(400, "malformed", exc.detail) from None
    check_strings(text, doc)
    return doc


def check_strings(text: bytes, doc: Any, may_be_long: bool | None = None) -> None:
    """Refuse a document holding a NUL, a lone surrogate or an over-long string. The walk over
    its strings only runs when the text could hold one: a \\u escape of NUL or a surrogate (the
    only way either gets through the UTF-8 decoder and the parser), or a text longer than
    MAX_STRING (`may_be_long` defaults to that: no string is longer than its text)."""
    why = None
    # memchr for a backslash first: most bodies have none, and the scan is then free.
    if b"\\" in text and may_hold_bad_strings(text):
        why = find_bad_string(doc)
    if may_be_long is None:
        may_be_long = len(text) > MAX_STRING
    if why is None and may_be_long:
        why = find_long_string(doc, MAX_STRING)
    if why is not None:
        raise DrainError(400, "bad_string", _short(why))


def records(body: bytes) -> list[dict[str, Any]]:
    """A JSON array of objects, or NDJSON (one object per line); anything else is malformed."""
    text = body.lstrip()
    if not text:
        return []
    if text[:1] == b"[":
        try:
            doc = loads_json(text)
        except BadRequest as exc:
            raise DrainError(400, "malformed", f"body is not a JSON array: {exc.detail}") from None
        if not isinstance(doc, list):
            raise DrainError(400, "malformed", "body is not a JSON array")
        for i, item in enumerate(doc):
            if not isinstance(item, dict):
                raise DrainError(400, "malformed", f"record {i} is not a JSON object")
        check_strings(text, doc)
        return doc
    out: list[dict[str, Any]] = []
    long_line = False
    for n, line in enumerate(text.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            item = loads_json(line)
        except BadRequest as exc:
            raise DrainError(400, "malformed", f"line {n}: {exc.detail}") from None
        if not isinstance(item, dict):
            raise DrainError(400, "malformed", f"line {n} is not a JSON object")
        if len(line) > MAX_STRING:
            long_line = True
        out.append(item)
    # Only a long line can hold a long string; the other scans run once over the whole body.
    check_strings(text, out, long_line)
    return out


def _short(text: str) -> str:
    # Messages name a position or a key path, never a value; keys are the sender's, so cut.
    return text[:200]
