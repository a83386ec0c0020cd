"""Who is calling: a Supabase session JWT (HS256 with the project's secret, or RS256/ES256 with
a key from the project's JWKS) or a configured machine token. Anything else is an ApiError with
a 401 and a closed reason; no message ever holds the token.

What the caller may then see or do is not decided here: the claims go to the database, whose
row-level security policies decide (api/db.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

import httpx
import jwt
from aiohttp import web

from api.config import Machine
from api.errors import ApiError
from common.ingress import header_bytes
from schema.rows import AuditEntry

log = logging.getLogger(__name__)

# Asymmetric algorithms Supabase's signing keys use; their keys come only from the JWKS.
ASYMMETRIC = ("RS256", "ES256")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="wsinfra-api"'}


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller: the user id the policies see as auth.uid(), and the claims
    the database gets as request.jwt.claims (Supabase's API passes the token's payload)."""

    user_id: UUID
    claims: Mapping[str, Any] = field(repr=False)
    kind: Literal["jwt", "machine"]
    machine: str | None = None

    @property
    def claims_json(self) -> str:
        return json.dumps(dict(self.claims), separators=(",", ":"), default=str)

    @property
    def display(self) -> str:
        """Who, for people reading a silence: the email, the machine's name, or the user id."""
        email = self.claims.get("email")
        if isinstance(email, str) and email:
            return email
        if self.machine is not None:
            return f"machine:{self.machine}"
        return str(self.user_id)

    def audit(
        self,
        action: str,
        table: str,
        target_id: str | None,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        request_id: str | None,
    ) -> AuditEntry:
        """The audit row of a write this caller made (its INSERT policy wants auth.uid())."""
        return AuditEntry(
            actor_user_id=self.user_id,
            actor_kind=self.kind,
            actor_machine=self.machine,
            action=action,
            target_table=table,
            target_id=target_id,
            before=before,
            after=after,
            request_id=request_id,
        )


# Year 9999: any date a NumericDate may sensibly hold.
MAX_NUMERIC_DATE = 253402300800


def _unauthorized(code: str, reason: str) -> ApiError:
    return ApiError(code, reason, CHALLENGE)


class JwksUnavailable(Exception):
    """The JWKS could not be fetched and no earlier copy is at hand."""


class JwksCache:
    """The project's signing keys, fetched through httpx (async: PyJWT's PyJWKClient fetches
    with urllib and would block the event loop). Keys are used for `ttl` seconds; a token naming
    a key we do not have triggers a fetch (a rotation), but no fetch attempt, successful or not,
    follows another within `min_interval`. When a fetch fails the keys we had stay in use."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        ttl: float,
        min_interval: float,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.client = client
        self.ttl = ttl
        self.min_interval = min_interval
        self.timeout = timeout
        self.clock = clock
        self.fetches = 0
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key named `kid`, or None when the JWKS (fetched again if allowed) lacks it."""
        if self._keys is not None and kid in self._keys and not self._stale():
            return self._keys[kid]
        async with self._lock:
            # Another request may have fetched while this one waited for the lock.
            missing = self._keys is None or kid not in self._keys
            if (missing or self._stale()) and (
                self.clock() - self._attempted_at >= self.min_interval
            ):
                await self._fetch()
            if self._keys is None:
                raise JwksUnavailable("no JWKS fetched yet")
            return self._keys.get(kid)

    def _stale(self) -> bool:
        return self.clock() - self._fetched_at >= self.ttl

    async def _fetch(self) -> None:
        self._attempted_at = self.clock()
        self.fetches += 1
        try:
            resp = await self.client.get(self.url, timeout=self.timeout)
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            keys = parse_jwks(resp.json())
        except (httpx.HTTPError, ValueError) as exc:
            reason = type(exc).__name__ if isinstance(exc, httpx.HTTPError) else str(exc)
            log.warning("jwks fetch failed", extra={"reason": reason[:200]})
            if self._keys is None:
                raise JwksUnavailable(reason) from None
            return
        self._keys = keys
        self._fetched_at = self.clock()


def parse_jwks(doc: Any) -> dict[str, jwt.PyJWK]:
    """{kid: key} of the usable signing keys of a JWKS document. Only RSA and EC keys for
    RS256/ES256 count: a symmetric key in a JWKS must never become an HMAC secret."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("not a JWKS document (no keys list)")
    out: dict[str, jwt.PyJWK] = {}
    for data in doc["keys"]:
        if not isinstance(data, dict) or not isinstance(data.get("kid"), str):
            continue
        if data.get("use", "sig") != "sig" or data.get("kty") not in ("RSA", "EC"):
            continue
        try:
            key = jwt.PyJWK(data)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if key.algorithm_name in ASYMMETRIC:
            out[data["kid"]] = key
    if not out:
        raise ValueError("the JWKS holds no RS256/ES256 signing key")
    return out


# PyJWT's exceptions → our reasons; the first match wins (subclasses before their parents).
_JWT_ERRORS: tuple[tuple[type[Exception], str, str], ...] = (
    (jwt.ExpiredSignatureError, "expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "the token is not valid yet (nbf or iat)"),
    (jwt.InvalidAudienceError, "wrong_audience", "the token's audience (aud) is not accepted"),
    (jwt.InvalidIssuerError, "wrong_issuer", "the token's issuer (iss) is not accepted"),
    (jwt.MissingRequiredClaimError, "missing_claim", "the token lacks a required claim"),
    (jwt.InvalidSignatureError, "bad_signature", "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "unsupported_algorithm", "the token's algorithm does not fit"),
    (jwt.InvalidKeyError, "bad_signature", "the token's key is not acceptable"),
    (jwt.InvalidTokenError, "malformed_token", "the token is not a well-formed JWT"),
)


class Authenticator:
    def __init__(
        self,
        jwt_secret: bytes,
        machines: tuple[Machine, ...],
        *,
        audience: str,
        issuer: str,
        leeway: float,
        jwks: JwksCache | None = None,
    ) -> None:
        self.jwt_secret = jwt_secret
        self.machines = machines
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.jwks = jwks

    async def identify(self, request: web.Request) -> Identity:
        raw = header_bytes(request, "Authorization")
        if not raw:
            raise _unauthorized("missing_token", "send Authorization: Bearer <token>")
        scheme, _, value = raw.partition(b" ")
        token = value.strip()
        if scheme.lower() != b"bearer" or not token:
            raise _unauthorized(
                "malformed_token", "the Authorization header is not 'Bearer <token>'"
            )
        machine = self._machine(token)
        if machine is not None:
            return self.acting_as(machine)
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError:
            raise _unauthorized("malformed_token", "the token is not ASCII") from None
        return await self._jwt(text)

    def acting_as(self, machine: Machine) -> Identity:
        """The identity of a machine caller: its user, with the claims the policies see."""
        return Identity(
            machine.user_id,
            {
                "sub": str(machine.user_id),
                "role": "authenticated",
                "aud": self.audience,
                "app_role": machine.role,
                "machine": machine.name,
            },
            "machine",
            machine.name,
        )

    def _machine(self, token: bytes) -> Machine | None:
        # Every configured token is compared, each in constant time, so the time taken says
        # nothing about which one (or how much of one) matched.
        found = None
        for m in self.machines:
            if hmac.compare_digest(token, m.token):
                found = m
        return found

    async def _jwt(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _unauthorized("malformed_token", "the token is not a well-formed JWT") from None
        alg = header.get("alg")
        key: bytes | jwt.PyJWK
        # The algorithm picks the key source, and each source serves exactly one kind of key:
        # HS256 only ever meets the secret, RS256/ES256 only keys from the JWKS (PyJWK binds
        # its algorithm). So trusting the header's alg cannot turn a public key into an HMAC
        # secret, the classic confusion RFC 8725 warns about.
        if alg == "HS256":
            key = self.jwt_secret
        elif alg in ASYMMETRIC and self.jwks is not None:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise _unauthorized("unknown_key", "the token names no key (kid)")
            try:
                found = await self.jwks.key(kid)
            except JwksUnavailable:
                raise ApiError(
                    "jwks_unavailable", "the project's signing keys cannot be fetched; retry"
                ) from None
            if found is None:
                raise _unauthorized("unknown_key", "the token's key (kid) is not in the JWKS")
            key = found
        else:
            accepted = "HS256" + (", RS256, ES256" if self.jwks is not None else "")
            raise _unauthorized(
                "unsupported_algorithm", f"the token's algorithm is not accepted ({accepted} are)"
            )
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(alg)],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={
                    "require": ["exp", "sub", "aud", "iss"],
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidTokenError as exc:
            for kind, code, reason in _JWT_ERRORS:
                if isinstance(exc, kind):
                    raise _unauthorized(code, reason) from None
            raise  # unreachable: InvalidTokenError is the last row
        # RFC 7519: exp, nbf and iat are NumericDates. PyJWT also takes "9999999999" (a string)
        # and 10**30 (past any date it can check); neither is a token Supabase issues.
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if name in claims and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value < MAX_NUMERIC_DATE
            ):
                raise _unauthorized("malformed_token", f"the token's {name} is not a NumericDate")
        return self._user(claims)

    @staticmethod
    def _user(claims: dict[str, Any]) -> Identity:
        # Supabase's anon and service_role keys are JWTs signed with the same secret; neither
        # is a person's session, and the service key would bypass every policy.
        if claims.get("role") != "authenticated":
            raise _unauthorized("not_a_user", "the token is not a signed-in user's (role)")
        try:
            user_id = UUID(str(claims["sub"]))
        except ValueError:
            raise _unauthorized(
                "not_a_user", "the token's subject (sub) is not a user id"
            ) from None
        return Identity(user_id, claims, "jwt")
