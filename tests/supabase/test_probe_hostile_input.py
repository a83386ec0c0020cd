"""/probe and /sd against hostile input: a 4xx with a short reason and a counter by reason, never
a 5xx, a traceback or the hostile value echoed back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters.supabase.project_metrics import REASONS
from tests.supabase.helpers import samples
from tests.supabase.test_project_metrics import KEY, client_for


@pytest.fixture
async def client(aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path) -> TestClient:
    return await client_for(
        aiohttp_client, aiohttp_server, tmp_path, {"projone": KEY}, {"projone": KEY}
    )


async def refused(client: TestClient) -> dict[tuple[str, str], float]:
    got = samples(await (await client.get("/metrics")).text())
    return {
        (dict(ls)["endpoint"], dict(ls)["reason"]): v
        for (n, ls), v in got.items()
        if n == "supabase_project_metrics_bad_requests_total"
    }


async def raw_get(client: TestClient, target: bytes, host: bytes = b"x") -> tuple[int, bytes]:
    """A request with a request line or Host no HTTP library would send (NUL, non-UTF-8)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


LONG = "a" * 7000


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        ("", 400, "missing_project"),
        ("other=projone", 400, "missing_project"),
        ("project=", 400, "invalid_project"),
        ("project=a%00b", 400, "invalid_project"),  # NUL
        ("project=%ff%fe", 400, "invalid_project"),  # not UTF-8
        ("project=%C3%28", 400, "invalid_project"),  # not UTF-8
        ("project=pr%C3%B6jone", 400, "invalid_project"),  # not ASCII
        ("project=projone%0a", 400, "invalid_project"),  # a trailing newline
        ("project=../etc/passwd", 400, "invalid_project"),
        ("project=PROJONE", 400, "invalid_project"),
        ("project=" + "a" * 41, 400, "invalid_project"),
        ("project=" + LONG, 400, "invalid_project"),
        ("project=projone&project=projtwo", 400, "repeated_parameter"),
        ("project=projone&project=projone", 400, "repeated_parameter"),
        ("project=nokeyfile", 404, "unknown_project"),
    ],
)
async def test_bad_probe_input_is_a_4xx_with_a_reason_and_a_counter(
    client: TestClient, query: str, status: int, reason: str
) -> None:
    before = await refused(client)
    got, body = await raw_get(client, b"/probe?" + query.encode())
    assert got == status, body
    assert body.startswith(reason.encode() + b": "), body
    assert len(body) < 200
    assert b"passwd" not in body  # not echoed back
    assert LONG.encode() not in body
    after = await refused(client)
    assert after[("probe", reason)] == before[("probe", reason)] + 1
    assert sum(after.values()) == sum(before.values()) + 1


@pytest.mark.parametrize(
    "host", [b"\xff\xfe", b"a b", b"evil.example/path", b"h" * 300, b"x:99999999", b"[zz]:1"]
)
async def test_sd_refuses_a_host_it_would_hand_prometheus_as_a_target(
    client: TestClient, host: bytes
) -> None:
    before = await refused(client)
    status, body = await raw_get(client, b"/sd", host)
    assert status == 400, body
    assert body.startswith(b"invalid_host: ")
    assert host not in body
    assert (await refused(client))[("sd", "invalid_host")] == before[("sd", "invalid_host")] + 1


@pytest.mark.parametrize("host", [b"127.0.0.1:9704", b"[::1]:9704", b"wsinfra_supabase:9704"])
async def test_sd_accepts_hosts_and_addresses(client: TestClient, host: bytes) -> None:
    status, body = await raw_get(client, b"/sd", host)
    assert status == 200
    assert host in body


async def test_raw_bytes_the_http_parser_refuses_are_a_400(client: TestClient) -> None:
    for target in (b"/probe?project=\xff\xfe", b"/probe?project=\x00", b"/probe?" + b"a" * 9000):
        status, _ = await raw_get(client, target)
        assert status == 400, target


async def test_every_reason_is_counted_from_zero(client: TestClient) -> None:
    assert await refused(client) == {(e, r): 0.0 for e, reasons in REASONS.items() for r in reasons}


# Any byte a client can put in a request target: not space, CR, LF (they end the request line)
# or '#' (a fragment is never sent).
TARGET_BYTES = st.binary(max_size=120).map(lambda b: b.translate(None, b" \r\n#"))
query_values = st.one_of(
    st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    TARGET_BYTES,
    st.sampled_from([b"projone", b"projtwo", b"nokeyfile", b"%00", b"%ff", b"projone%0a"]),
)
query_strings = st.one_of(
    TARGET_BYTES,
    st.lists(
        st.tuples(st.sampled_from([b"project", b"Project", b"", b"x", b"project[]"]), query_values),
        max_size=4,
    ).map(lambda kv: b"&".join(k + b"=" + v for k, v in kv).translate(None, b" \r\n#")),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(query=query_strings)
async def test_arbitrary_query_strings_never_5xx(client: TestClient, query: bytes) -> None:
    before = await refused(client)
    status, body = await raw_get(client, b"/probe?" + query)
    assert status < 500, (query, body[:200])
    assert b"Traceback" not in body
    if 400 <= status < 500 and body[:1].islower() and b": " in body[:40]:
        # Refused by the handler (not the HTTP parser): counted once, by its reason.
        reason = body.split(b": ", 1)[0].decode()
        after = await refused(client)
        assert after[("probe", reason)] == before[("probe", reason)] + 1, body
