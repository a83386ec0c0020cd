"""The shared edge for HTTP input from outside: strict JSON, clean strings, headers as bytes,
secrets compared in constant time, and one exception that becomes a 4xx with a reason.

Every service that takes input from the network (the recorder's webhooks, the Vercel drains,
the operator API) reads bodies and headers through here, so that hostile input of any kind —
NUL bytes, lone surrogates, NaN literals, absurd nesting, non-UTF-8 headers — is a 4xx with a
short reason and a counter, never a 500, a traceback or a half-write.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from typing import Any

from aiohttp import web

# Nesting deeper than this is refused before anything walks it. No payload we accept needs more
# than a handful of levels; the limit only has to stay far below Python's recursion limit.
MAX_DEPTH = 32
REPLACEMENT = "\ufffd"


class BadRequest(Exception):
    """Bad input: `reason` is a closed enum (it becomes a metric label), `detail` is for the caller."""

    def __init__(self, reason: str, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status


def _no_constant(name: str) -> Any:
    raise BadRequest("invalid_json", f"{name} is not JSON (RFC 8259 has no NaN or Infinity)", 400)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadRequest("invalid_json", f"key {json.dumps(key[:40])} appears twice", 400)
            seen.add(key)
    return doc


def strict_json(body: bytes, max_depth: int = MAX_DEPTH, *, unique_keys: bool = False) -> Any:
    """Parse RFC 8259 JSON: no NaN/Infinity, at most `max_depth` levels of nesting; with
    `unique_keys`, an object naming a key twice is refused (RFC 8259 leaves its meaning open,
    and "the last one wins" lets one body say two things: for what people send us)."""
    hook = _unique_keys if unique_keys else None
    try:
        doc = json.loads(body, parse_constant=_no_constant, object_pairs_hook=hook)
    except BadRequest:
        raise
    except RecursionError:
        # The C parser guards its own recursion: thousands of brackets end here, not in a crash.
        raise BadRequest("invalid_json", f"nested deeper than {max_depth} levels", 400) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("invalid_json", f"body is not JSON: {exc}", 400) from None
    if _deeper_than(doc, max_depth):
        raise BadRequest("invalid_json", f"nested deeper than {max_depth} levels", 400)
    return doc


def _deeper_than(doc: Any, limit: int) -> bool:
    """Level by level, over containers only: what later walks, dumps and copies can rely on."""
    level, depth = [doc], 1
    while level:
        if depth > limit:
            return True
        nxt: list[Any] = []
        for node in level:
            values = node.values() if type(node) is dict else node if type(node) is list else ()
            nxt += [v for v in values if type(v) is dict or type(v) is list]
        level, depth = nxt, depth + 1
    return False


# In valid JSON a NUL or a lone surrogate can only arrive as a \u escape (raw control characters
# are refused by the parser, invalid UTF-8 by the decoder), so a body without these escapes holds
# no unstorable string and needs no walk.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def may_hold_bad_strings(body: bytes) -> bool:
    return _SUSPECT_ESCAPE.search(body) is not None


def bad_string(value: str) -> str | None:
    """Why a string cannot be stored as text (PostgreSQL refuses NUL; UTF-8 has no lone
    surrogates), or None when it can."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def find_bad_string(doc: Any, where: str = "") -> str | None:
    """The first string (key or value) in a parsed document that cannot be stored, as
    'path: why'; None when every string is clean. Iterative: depth is already bounded."""
    stack: list[tuple[str, Any]] = [(where, doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            why = bad_string(value)
            if why:
                return f"{path or '(value)'}: {why}"
        elif isinstance(value, dict):
            for k, v in value.items():
                why = bad_string(k)
                if why:
                    return f"{path or '(top level)'}: a key {why}"
                stack.append((f"{path}.{k}" if path else k, v))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
    return None


def scrub(doc: Any) -> Any:
    """A copy with every unstorable character replaced by U+FFFD and non-finite floats by None:
    what a raw log (JSONB) keeps of a payload that was partly bad."""
    if isinstance(doc, str):
        return _scrub_str(doc)
    if isinstance(doc, dict):
        return {_scrub_str(k): scrub(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [scrub(v) for v in doc]
    if isinstance(doc, float) and not math.isfinite(doc):
        return None
    return doc


def _scrub_str(value: str) -> str:
    if bad_string(value) is None:
        return value
    return "".join(REPLACEMENT if c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF else c for c in value)


def header_bytes(request: web.Request, name: str) -> bytes:
    """A header's value as the bytes the client sent (aiohttp keeps undecodable bytes as
    surrogate escapes; comparing those as text would raise)."""
    return request.headers.get(name, "").encode("utf-8", "surrogateescape")


def bearer_ok(request: web.Request, token: bytes) -> bool:
    scheme, _, value = header_bytes(request, "Authorization").partition(b" ")
    # compare_digest: the time taken must not reveal how much of the token matched.
    return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), token)


def signature_ok(
    secret: bytes | None, body: bytes, given: bytes, algo: str, prefix: bytes = b""
) -> bool:
    """An HMAC hex digest header (optionally with a prefix such as b'sha256=') matches the body."""
    if secret is None or not given.startswith(prefix):
        return False
    want = hmac.new(secret, body, getattr(hashlib, algo)).hexdigest().encode()
    return hmac.compare_digest(given.removeprefix(prefix).strip().lower(), want)


def require_content_type(request: web.Request, *allowed: str) -> None:
    if request.content_type not in allowed:
        raise BadRequest(
            "unsupported_media_type",
            f"Content-Type {request.content_type!r} is not accepted (want {' or '.join(allowed)})",
            415,
        )


def fits_int(value: int, bits: int = 32) -> bool:
    """Whether an integer fits a signed SQL integer column of `bits` bits."""
    limit: int = 2 ** (bits - 1)
    return -limit <= value < limit


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def loads_json(text: bytes | str) -> Any:
    """RFC 8259 JSON for bodies too big for strict_json's depth scan (a Python loop over every
    byte): UTF-8 only (so no encoded surrogates), NaN and Infinity refused, and nesting deeper
    than the interpreter's recursion limit refused by the C parser's own check (nothing a caller
    does after parsing may then recurse on the document). Strings are not checked: see
    find_bad_string and find_long_string."""
    try:
        if isinstance(text, bytes | bytearray):
            text = bytes(text).removeprefix(b"\xef\xbb\xbf").decode("utf-8")
        return _DECODER.decode(text)
    except BadRequest:
        raise
    except RecursionError:
        raise BadRequest("invalid_json", "nested too deeply", 400) from None
    except UnicodeDecodeError as exc:
        raise BadRequest("invalid_json", f"body is not UTF-8 (byte {exc.start})", 400) from None
    except ValueError as exc:
        # json's messages carry a position, never the input.
        raise BadRequest("invalid_json", f"body is not JSON: {str(exc)[:200]}", 400) from None


def find_long_string(doc: Any, max_len: int) -> str | None:
    """The first string (key or value) in a parsed document longer than `max_len` characters,
    as 'path: why'; None when there is none. Iterative, like find_bad_string."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if len(value) > max_len:
                return f"{path or '(value)'}: longer than {max_len} characters"
        elif isinstance(value, dict):
            for k, v in value.items():
                if len(k) > max_len:
                    return f"{path or '(top level)'}: a key longer than {max_len} characters"
                stack.append((f"{path}.{k}" if path else k, v))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
    return None


def hex_digest_header(given: bytes, length: int) -> bytes | None:
    """A hex digest header (HMAC signatures) as `length` lowercase ASCII hex bytes, or None when
    it cannot be one: absent, the wrong length, or any other byte (non-ASCII, non-UTF-8…).
    Lets a receiver refuse a request before reading its body."""
    value = given.strip().lower()
    if len(value) != length or value.translate(None, b"0123456789abcdef"):
        return None
    return value
