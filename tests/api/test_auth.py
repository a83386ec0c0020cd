"""The authenticator without a database: what each kind of token becomes (claims for the
database, or a 401 reason), machine tokens, and the JWKS cache's fetch discipline."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography.hazmat.primitives.asymmetric import rsa

from api.auth import Authenticator, JwksCache, parse_jwks
from api.config import Machine
from api.errors import ApiError
from tests.api.conftest import AUDIENCE, ISSUER, SECRET, token

USER = uuid.UUID("00000000-0000-4000-8000-000000000001")
BOT = Machine("ci", b"machine-token-for-ci-0123456789abcdef", "developer", uuid.uuid4())


def authenticator(jwks: JwksCache | None = None) -> Authenticator:
    return Authenticator(
        SECRET.encode(), (BOT,), audience=AUDIENCE, issuer=ISSUER, leeway=30.0, jwks=jwks
    )


async def identify(auth: Authenticator, header: str | None) -> Any:
    headers = {} if header is None else {"Authorization": header}
    return await auth.identify(make_mocked_request("GET", "/", headers=headers))


async def test_a_session_token_passes_its_own_claims_to_the_database() -> None:
    who = await identify(authenticator(), f"Bearer {token(USER, email='ana@example.com')}")
    assert (who.user_id, who.kind, who.machine, who.display) == (
        USER,
        "jwt",
        None,
        "ana@example.com",
    )
    claims = json.loads(who.claims_json)
    assert (claims["sub"], claims["role"], claims["aud"]) == (str(USER), "authenticated", AUDIENCE)


async def test_a_machine_token_acts_as_its_user_with_authenticated_claims() -> None:
    who = await identify(authenticator(), f"Bearer {BOT.token.decode()}")
    assert (who.user_id, who.kind, who.machine, who.display) == (
        BOT.user_id,
        "machine",
        "ci",
        "machine:ci",
    )
    assert json.loads(who.claims_json) == {
        "sub": str(BOT.user_id),
        "role": "authenticated",
        "aud": AUDIENCE,
        "app_role": "developer",
        "machine": "ci",
    }
    assert "machine-token" not in repr(BOT)


async def test_the_leeway_forgives_clock_skew_and_no_more() -> None:
    auth = authenticator()
    now = datetime.now(UTC)
    await identify(auth, f"Bearer {token(USER, exp=now - timedelta(seconds=20))}")
    with pytest.raises(ApiError) as err:
        await identify(auth, f"Bearer {token(USER, exp=now - timedelta(seconds=40))}")
    assert err.value.code == "expired"
    with pytest.raises(ApiError) as err:
        await identify(auth, f"Bearer {token(USER, nbf=now + timedelta(minutes=5))}")
    assert err.value.code == "not_yet_valid"


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "9999999999"},  # a string PyJWT would read as a number
        {"exp": 10**30},  # past any date
        {"exp": True},
        {"iat": "0"},
        {"nbf": -5},
    ],
)
async def test_dates_that_are_not_numeric_dates_are_refused(claims: dict[str, Any]) -> None:
    """Found by an outside test: RFC 7519's NumericDate is a number of seconds; a string or an
    absurd value is no token Supabase issues."""
    with pytest.raises(ApiError) as err:
        await identify(authenticator(), f"Bearer {token(USER, **claims)}")
    assert err.value.code in ("malformed_token", "expired", "not_yet_valid"), err.value.reason
    assert err.value.status == 401


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_token"),
        ("Bearer", "malformed_token"),
        ("Token abc", "malformed_token"),
        ("Bearer \u00e9t\u00e9", "malformed_token"),
        # Supabase signs sessions with HS256; another HMAC algorithm is not a session of ours.
        (
            f"Bearer {jwt.encode({'sub': str(USER)}, 'x' * 64, algorithm='HS384')}",
            "unsupported_algorithm",
        ),
        (f"Bearer {token(USER, algorithm='HS256', key='y' * 40)}", "bad_signature"),
    ],
)
async def test_refusals_carry_a_closed_reason_and_a_challenge(
    header: str | None, code: str
) -> None:
    with pytest.raises(ApiError) as err:
        await identify(authenticator(), header)
    assert (err.value.code, err.value.status) == (code, 401)
    assert err.value.headers["WWW-Authenticate"].startswith("Bearer")


async def test_rs256_needs_a_configured_jwks() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ApiError) as err:
        await identify(authenticator(), f"Bearer {token(USER, key=key, algorithm='RS256')}")
    assert err.value.code == "unsupported_algorithm"
    assert "HS256" in err.value.reason


# --- the JWKS cache ---------------------------------------------------------------------------


def _jwk(kid: str) -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return key, {**jwk, "kid": kid, "use": "sig"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Jwks:
    """A JWKS endpoint whose keys and health the test changes; it counts fetches."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.failing = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.failing:
            return httpx.Response(503)
        return httpx.Response(200, json={"keys": self.keys})


def cache(endpoint: Jwks, clock: Clock) -> JwksCache:
    client = httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handler))
    return JwksCache(
        "https://p.supabase.co/auth/v1/.well-known/jwks.json",
        client,
        ttl=600,
        min_interval=30,
        clock=clock,
    )


async def test_keys_are_cached_for_the_ttl_then_fetched_again() -> None:
    _, k1 = _jwk("k1")
    endpoint, clock = Jwks(k1), Clock()
    jwks = cache(endpoint, clock)
    assert await jwks.key("k1") is not None
    clock.now += 599
    assert await jwks.key("k1") is not None
    assert endpoint.fetches == 1
    clock.now += 2
    assert await jwks.key("k1") is not None
    assert endpoint.fetches == 2


async def test_an_unknown_kid_refetches_at_most_once_per_interval() -> None:
    key1, k1 = _jwk("k1")
    key2, k2 = _jwk("k2")
    endpoint, clock = Jwks(k1), Clock()
    jwks = cache(endpoint, clock)
    auth = authenticator(jwks)
    await identify(
        auth, f"Bearer {token(USER, key=key1, algorithm='RS256', headers={'kid': 'k1'})}"
    )
    # The project rotates: the new key appears in the JWKS.
    endpoint.keys.append(k2)
    clock.now += 31
    rotated = f"Bearer {token(USER, key=key2, algorithm='RS256', headers={'kid': 'k2'})}"
    assert (await identify(auth, rotated)).user_id == USER
    assert endpoint.fetches == 2
    # A flood of forged kids within the interval costs no fetch at all.
    for n in range(20):
        forged = f"Bearer {token(USER, key=key2, algorithm='RS256', headers={'kid': f'x{n}'})}"
        with pytest.raises(ApiError) as err:
            await identify(auth, forged)
        assert err.value.code == "unknown_key"
    assert endpoint.fetches == 2
    clock.now += 31
    with pytest.raises(ApiError):
        await identify(auth, forged)
    assert endpoint.fetches == 3


async def test_a_failing_jwks_keeps_the_keys_it_had_and_is_503_when_it_never_had_any() -> None:
    key1, k1 = _jwk("k1")
    endpoint, clock = Jwks(k1), Clock()
    endpoint.failing = True
    auth = authenticator(cache(endpoint, clock))
    signed = f"Bearer {token(USER, key=key1, algorithm='RS256', headers={'kid': 'k1'})}"
    with pytest.raises(ApiError) as err:
        await identify(auth, signed)
    assert (err.value.code, err.value.status) == ("jwks_unavailable", 503)
    clock.now += 31
    endpoint.failing = False
    assert (await identify(auth, signed)).user_id == USER
    endpoint.failing = True
    clock.now += 601  # stale, and the refetch fails: the old keys still verify
    assert (await identify(auth, signed)).user_id == USER
    assert endpoint.fetches == 3


def test_only_asymmetric_signing_keys_are_taken_from_a_jwks() -> None:
    _, rsa_key = _jwk("rsa")
    oct_key = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}
    enc_key = {**_jwk("enc")[1], "use": "enc"}
    assert set(parse_jwks({"keys": [rsa_key, oct_key, enc_key, {"kid": 5}, "junk"]})) == {"rsa"}
    with pytest.raises(ValueError, match="no RS256/ES256"):
        parse_jwks({"keys": [oct_key]})
    with pytest.raises(ValueError, match="not a JWKS"):
        parse_jwks([])
