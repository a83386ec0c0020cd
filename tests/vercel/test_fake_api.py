"""The fake Vercel API is as strict as the real one about paths, auth, scope and parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fakes.vercel_api import VercelApiState, make_app, timeline

TOKEN = "t0ken"
TEAM = "team_abc"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(aiohttp_client) -> AsyncIterator[tuple[TestClient, VercelApiState]]:  # type: ignore[no-untyped-def]
    clock = [1_780_000_000.0]
    state = VercelApiState(
        token=TOKEN, team_id=TEAM, team_slug="acme", clock=lambda: clock[0], rate_limit=5
    )
    state.add(timeline("prj_1", "web", clock[0] - 3600, clock[0], 60.0))
    return await aiohttp_client(TestServer(make_app(state))), state


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/v6/deployments?teamId=team_abc", {}, 403, "forbidden"),
        ("/v6/deployments?teamId=team_abc", {"Authorization": "Bearer nope"}, 403, "forbidden"),
        ("/v6/deployments", AUTH, 403, "forbidden"),  # no team scope on a team's token
        ("/v6/deployments?teamId=team_other", AUTH, 403, "forbidden"),
        ("/v6/deployments?teamId=team_abc&limit=101", AUTH, 400, "bad_request"),
        ("/v6/deployments?teamId=team_abc&limit=ten", AUTH, 400, "bad_request"),
        ("/v6/deployments?teamId=team_abc&pageSize=10", AUTH, 400, "bad_request"),
        ("/v6/deployments?teamId=team_abc&projectId=a&projectIds=b", AUTH, 400, "bad_request"),
        ("/v6/deployments?teamId=team_abc&state=DONE", AUTH, 400, "bad_request"),
        ("/v5/deployments?teamId=team_abc", AUTH, 404, "not_found"),
    ],
)
async def test_refusals(
    client: tuple[TestClient, VercelApiState],
    path: str,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    c, _ = client
    resp = await c.get(path, headers=headers)
    assert resp.status == status
    assert (await resp.json())["error"]["code"] == code


async def test_paging_and_rate_limit_headers(client: tuple[TestClient, VercelApiState]) -> None:
    c, state = client
    seen: list[str] = []
    url = "/v7/deployments?slug=acme&projectId=prj_1&limit=25"
    until = None
    for _ in range(5):
        resp = await c.get(url + (f"&until={until}" if until else ""), headers=AUTH)
        assert resp.status == 200
        assert int(resp.headers["X-RateLimit-Limit"]) == 5
        assert int(resp.headers["X-RateLimit-Reset"]) >= 1_780_000_000
        doc = await resp.json()
        seen += [d["uid"] for d in doc["deployments"]]
        until = doc["pagination"]["next"]
        if until is None:
            break
    assert len(seen) == len(set(seen)) == 60  # each once, none skipped
    assert len(state.requests) == 3
    assert (await c.get(url, headers=AUTH)).status == 200
    assert (await c.get(url, headers=AUTH)).status == 200  # the fifth of five this minute
    resp = await c.get(url, headers=AUTH)
    assert resp.status == 429
    body = await resp.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["limit"]["remaining"] == 0
    assert resp.headers["X-RateLimit-Remaining"] == "0"
