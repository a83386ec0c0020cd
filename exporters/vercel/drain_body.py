"""What every Vercel drain delivery goes through first: signature, decompression, framing.

Signature: lowercase hex HMAC-SHA1 of the body with the drain's secret, compared in constant
time. Whether Vercel signs the gzip bytes or the plain ones is not documented, so a gzip body
is accepted when either matches.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from typing import Any

GZIP_MAGIC = b"\x1f\x8b"


class DrainError(Exception):
    """A delivery we refuse: `status` is the HTTP answer, `outcome` the counted label."""

    def __init__(self, status: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome
        self.reason = reason


def signature(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha1).hexdigest()


def _matches(secret: bytes, body: bytes, given: str) -> bool:
    return hmac.compare_digest(signature(secret, body), given)


def gunzip(raw: bytes, limit: int) -> bytes:
    """Decompress at most `limit` bytes; a bigger (or bomb) body is refused, not buffered."""
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


def open_body(raw: bytes, secret: bytes, given: str | None, limit: int) -> bytes:
    """Check the signature and return the plain body; raise DrainError otherwise."""
    # The header is hex; anything else cannot match and must not reach compare_digest's
    # ASCII-only path with a surprise.
    sig = (given or "").strip().lower()
    if not sig or len(sig) != 40 or not all(c in "0123456789abcdef" for c in sig):
        raise DrainError(403, "bad_signature", "signature didn't match")
    # Sniffed, not taken from Content-Encoding: whether Vercel sets that header for gzip
    # drains is not documented, and no JSON, NDJSON or OTLP protobuf body starts with 1f 8b.
    zipped = raw[:2] == GZIP_MAGIC
    if not zipped:
        if not _matches(secret, raw, sig):
            raise DrainError(403, "bad_signature", "signature didn't match")
        return raw
    if _matches(secret, raw, sig):
        return gunzip(raw, limit)
    plain = gunzip(raw, limit)
    if not _matches(secret, plain, sig):
        raise DrainError(403, "bad_signature", "signature didn't match")
    return plain


def records(body: bytes) -> list[dict[str, Any]]:
    """A JSON array of objects, or NDJSON (one object per line); anything else is malformed."""
    text = body.lstrip()
    if not text:
        return []
    if text[:1] == b"[":
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise DrainError(400, "malformed", f"body is not a JSON array: {_short(exc)}") from None
        if not isinstance(doc, list):
            raise DrainError(400, "malformed", "body is not a JSON array")
        for i, item in enumerate(doc):
            if not isinstance(item, dict):
                raise DrainError(400, "malformed", f"record {i} is not a JSON object")
        return doc
    out: list[dict[str, Any]] = []
    for n, line in enumerate(text.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise DrainError(400, "malformed", f"line {n} is not JSON: {_short(exc)}") from None
        if not isinstance(item, dict):
            raise DrainError(400, "malformed", f"line {n} is not a JSON object")
        out.append(item)
    return out


def _short(exc: BaseException) -> str:
    # json's messages carry a position, never the input: safe to return to the sender.
    return str(exc)[:200]
