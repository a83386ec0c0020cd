"""POST /api/infrastructure/deployments: a deployment started through a Vercel Deploy Hook.

Vercel is the strict fake (fakes/vercel_api.py, deploy hooks as vercel.com/docs/deploy-hooks
documents them) on a real port; the database is real PostgreSQL under the spec's policies; the
API is the real app. The hook URL is a credential: no answer, log line or audit row may hold it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.config import ApiConfig
from common.config import ConfigError, load_config
from compose.processes import free_port
from fakes.vercel_api import FakeHook, VercelApiState
from fakes.vercel_api import make_app as fake_vercel
from tests.api.conftest import USERS, as_user, execute, rows, start_client, write_config

pytestmark = pytest.mark.integration

URL = "/api/infrastructure/deployments"
PROJECT = "prj_98g22o5YUFVHlKOzj9vKPTyN2SDG"
# Hook ids are the secret part of the URL: each test's must show up nowhere.
MAIN_HOOK = "tKybBxqhQsMAIN"
DEVELOP_HOOK = "tKybBxqhQsDEVL"
BODY = {"environment": "production", "git_branch": "main"}


def _hook_file(tmp_path: Path, name: str, url: str) -> str:
    path = tmp_path / name
    path.write_text(url + "\n")
    return str(path)


def hooks_config(
    tmp_path: Path,
    base: str,
    *,
    main_hook: str = MAIN_HOOK,
    extra: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """deploy_hooks for write_config: project web, production ← main, preview ← develop."""
    return {
        "hooks": [
            {
                "project": "web",
                "environment": "production",
                "git_branch": "main",
                "hook_url_file": _hook_file(
                    tmp_path, "hook_main", f"{base}/v1/integrations/deploy/{PROJECT}/{main_hook}"
                ),
            },
            {
                "project": "web",
                "environment": "preview",
                "git_branch": "develop",
                "hook_url_file": _hook_file(
                    tmp_path, "hook_dev", f"{base}/v1/integrations/deploy/{PROJECT}/{DEVELOP_HOOK}"
                ),
            },
            *(extra or []),
        ],
        "timeout": "2s",
    }


@pytest.fixture
async def vercel(aiohttp_server: Any) -> tuple[VercelApiState, str]:
    state = VercelApiState(token="unused-token")  # hooks take no token
    state.hooks += [
        FakeHook(PROJECT, MAIN_HOOK, "main", "production", "web"),
        FakeHook(PROJECT, DEVELOP_HOOK, "develop", None, "web"),
    ]
    # No access log: the request lines Vercel receives are Vercel's, not ours to check.
    server: TestServer = await aiohttp_server(fake_vercel(state), access_log=None)
    return state, str(server.make_url("")).rstrip("/")


async def _api(
    aiohttp_client: Any,
    tmp_path: Path,
    dsn: str,
    alertmanager: str,
    deploy_hooks: dict[str, Any] | None,
) -> TestClient[web.Request, web.Application]:
    extra = {} if deploy_hooks is None else {"deploy_hooks": deploy_hooks}
    cfg, secrets, _ = write_config(
        tmp_path, database={"conninfo": dsn}, alertmanager_url=alertmanager, **extra
    )
    return await start_client(aiohttp_client, cfg, secrets)


@pytest.fixture
async def api(
    seeded: tuple[str, Any],
    alertmanager: str,
    aiohttp_client: Any,
    tmp_path: Path,
    vercel: tuple[VercelApiState, str],
) -> TestClient[web.Request, web.Application]:
    dsn, _ = seeded
    return await _api(
        aiohttp_client, tmp_path, dsn, alertmanager, hooks_config(tmp_path, vercel[1])
    )


def _audit(dsn: str) -> list[tuple[Any, ...]]:
    return rows(
        dsn,
        "SELECT actor_user_id, actor_kind, action, target_table, target_id, before, after,"
        " request_id FROM infrastructure_audit_log WHERE target_table = 'deployment_history'",
    )


def _metric(text: str, outcome: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'api_vercel_deploy_hook_calls_total{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no api_vercel_deploy_hook_calls_total for {outcome}")


@pytest.mark.parametrize("role", ["admin", "developer"])
async def test_admins_and_developers_deploy_through_the_hook(
    api: TestClient[web.Request, web.Application],
    seeded: tuple[str, Any],
    vercel: tuple[VercelApiState, str],
    role: str,
) -> None:
    dsn, _ = seeded
    state, _ = vercel
    headers = {**as_user(role), "X-Request-Id": f"deploy-{role}"}
    resp = await api.post(URL, json=BODY, headers=headers)
    assert resp.status == 202, await resp.text()
    doc = await resp.json()
    # Exactly one hook call, a POST to the main hook without parameters.
    assert [(c.method, c.project_id, c.hook_id, c.query) for c in state.hook_calls] == [
        ("POST", PROJECT, MAIN_HOOK, {})
    ]
    job = state.hook_calls[0].job_id
    # DeploymentResponse: the hook job's id, queued; the seeded builds have no duration, so the
    # documented default estimate.
    assert doc == {
        "deployment_id": job,
        "estimated_duration_minutes": 5,
        "deployment_status": "queued",
    }
    [(actor, kind, action, table, target, before, after, request_id)] = _audit(dsn)
    assert (actor, kind, action, table, target, before) == (
        USERS[role],
        "jwt",
        "deployment.create",
        "deployment_history",
        job,
        None,
    )
    assert after["hook"] == {"project": "web", "environment": "production", "git_branch": "main"}
    assert after["job"]["id"] == job
    assert after["job"]["state"] == "PENDING"
    assert after["build_cache"] is True
    assert request_id == f"deploy-{role}"
    assert MAIN_HOOK not in json.dumps(after)
    # The probe row of the permission check was not kept.
    assert (
        rows(dsn, "SELECT 1 FROM deployment_history WHERE deployment_id LIKE 'wsinfra-api%%'") == []
    )


@pytest.mark.parametrize("role", ["ops", "finance"])
async def test_others_are_refused_by_the_deployments_policy(
    api: TestClient[web.Request, web.Application],
    seeded: tuple[str, Any],
    vercel: tuple[VercelApiState, str],
    role: str,
) -> None:
    dsn, _ = seeded
    state, _ = vercel
    # Even for a branch with no hook: who may deploy is answered before what is configured.
    for body in (BODY, {**BODY, "git_branch": "nope"}):
        resp = await api.post(URL, json=body, headers=as_user(role))
        assert resp.status == 403, await resp.text()
        doc = await resp.json()
        assert doc["error"] == "forbidden"
        assert "main" not in doc["reason"]
    assert state.hook_calls == []
    assert _audit(dsn) == []


async def test_build_cache_off_and_preview_branch(
    api: TestClient[web.Request, web.Application],
    seeded: tuple[str, Any],
    vercel: tuple[VercelApiState, str],
) -> None:
    dsn, _ = seeded
    state, _ = vercel
    body = {
        "environment": "preview",
        "git_branch": "develop",
        "deployment_config": {"project": "web", "build_cache": False},
    }
    resp = await api.post(URL, json=body, headers=as_user("developer"))
    assert resp.status == 202, await resp.text()
    [call] = state.hook_calls
    assert (call.method, call.hook_id, call.query) == (
        "POST",
        DEVELOP_HOOK,
        {"buildCache": "false"},
    )
    [row] = _audit(dsn)
    assert row[6]["build_cache"] is False


async def test_estimate_is_the_median_of_recent_successful_builds(
    api: TestClient[web.Request, web.Application], seeded: tuple[str, Any]
) -> None:
    dsn, _ = seeded
    # 60 s, 90 s, 400 s builds (a failed 3,000 s one does not count): median 90 s → 2 minutes.
    for n, (ms, status) in enumerate(
        ((60_000, "success"), (90_000, "success"), (400_000, "success"), (3_000_000, "failed"))
    ):
        execute(
            dsn,
            "INSERT INTO deployment_history (deployment_id, environment, git_branch,"
            " git_commit_hash, deployment_status, build_duration_ms) VALUES"
            " (%s, 'production', 'main', 'abc', %s, %s)",
            f"vercel:dpl_est{n}",
            status,
            ms,
        )
    resp = await api.post(URL, json=BODY, headers=as_user("admin"))
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["estimated_duration_minutes"] == 2


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({**BODY, "git_branch": "feature-x"}, "web production main; web preview develop"),
        ({**BODY, "environment": "staging"}, "configured: web production main"),
        ({**BODY, "deployment_config": {"project": "docs"}}, "no deploy hooks for project 'docs'"),
        ({**BODY, "git_commit_hash": "a1b2c3d"}, "omit git_commit_hash"),
        ({**BODY, "deployment_config": {"force": True}}, "deployment_config.force: unknown field"),
        ({**BODY, "environment": "qa"}, "environment"),
        ({**BODY, "git_branch": "has space"}, "git_branch"),
        ({**BODY, "git_commit_hash": "not-hex"}, "git_commit_hash"),
        ({"environment": "production"}, "git_branch"),
    ],
)
async def test_what_cannot_be_deployed_is_a_422_naming_why(
    api: TestClient[web.Request, web.Application],
    seeded: tuple[str, Any],
    vercel: tuple[VercelApiState, str],
    body: dict[str, Any],
    says: str,
) -> None:
    dsn, _ = seeded
    state, _ = vercel
    resp = await api.post(URL, json=body, headers=as_user("admin"))
    assert resp.status == 422, await resp.text()
    doc = await resp.json()
    assert doc["error"] == "invalid_request"
    assert says in doc["reason"]
    assert state.hook_calls == []
    assert _audit(dsn) == []


async def test_several_projects_need_a_project_name(
    seeded: tuple[str, Any],
    alertmanager: str,
    aiohttp_client: Any,
    tmp_path: Path,
    vercel: tuple[VercelApiState, str],
) -> None:
    dsn, _ = seeded
    state, base = vercel
    docs_hook = {
        "project": "docs",
        "environment": "production",
        "git_branch": "main",
        "hook_url_file": _hook_file(
            tmp_path, "hook_docs", f"{base}/v1/integrations/deploy/prj_docs/docsHook1"
        ),
    }
    state.hooks.append(FakeHook("prj_docs", "docsHook1", "main", "production"))
    api = await _api(
        aiohttp_client, tmp_path, dsn, alertmanager, hooks_config(tmp_path, base, extra=[docs_hook])
    )
    resp = await api.post(URL, json=BODY, headers=as_user("admin"))
    assert resp.status == 422
    assert "several projects (web, docs)" in (await resp.json())["reason"]
    body = {**BODY, "deployment_config": {"project": "docs"}}
    resp = await api.post(URL, json=body, headers=as_user("admin"))
    assert resp.status == 202, await resp.text()
    assert [c.hook_id for c in state.hook_calls] == ["docsHook1"]


async def test_no_hooks_configured_is_a_422(
    seeded: tuple[str, Any], alertmanager: str, aiohttp_client: Any, tmp_path: Path
) -> None:
    dsn, _ = seeded
    api = await _api(aiohttp_client, tmp_path, dsn, alertmanager, None)
    resp = await api.post(URL, json=BODY, headers=as_user("admin"))
    assert resp.status == 422
    assert "no deploy hooks are configured" in (await resp.json())["reason"]


async def test_hook_down_is_a_503_and_nothing_is_recorded(
    seeded: tuple[str, Any],
    alertmanager: str,
    aiohttp_client: Any,
    tmp_path: Path,
    vercel: tuple[VercelApiState, str],
) -> None:
    dsn, _ = seeded
    # Nothing listens on this port: connection refused.
    down = f"http://127.0.0.1:{free_port()}"
    api = await _api(aiohttp_client, tmp_path, dsn, alertmanager, hooks_config(tmp_path, down))
    resp = await api.post(URL, json=BODY, headers=as_user("admin"))
    assert resp.status == 503, await resp.text()
    doc = await resp.json()
    assert doc["error"] == "vercel_unavailable"
    assert "web production main" in doc["reason"]
    assert "nothing was deployed" in doc["reason"]
    assert _audit(dsn) == []
    metrics = await (await api.get("/metrics")).text()
    assert _metric(metrics, "unavailable") == 1
    assert _metric(metrics, "queued") == 0


async def test_vercel_5xx_and_garbage(
    api: TestClient[web.Request, web.Application],
    seeded: tuple[str, Any],
    vercel: tuple[VercelApiState, str],
) -> None:
    dsn, _ = seeded
    state, _ = vercel
    state.faults += ["500"]
    resp = await api.post(URL, json=BODY, headers=as_user("admin"))
    assert resp.status == 503
    assert (await resp.json())["error"] == "vercel_unavailable"
    # An answer without a job: Vercel may have started a build, but we cannot say which.
    state.faults += ["malformed"]
    resp = await api.post(URL, json=BODY, headers=as_user("admin"))
    assert resp.status == 502
    assert (await resp.json())["error"] == "vercel_refused"
    assert _audit(dsn) == []
    metrics = await (await api.get("/metrics")).text()
    assert _metric(metrics, "unavailable") == 1
    assert _metric(metrics, "bad_answer") == 1


async def test_deleted_hook_is_a_502_with_the_reason(
    seeded: tuple[str, Any],
    alertmanager: str,
    aiohttp_client: Any,
    tmp_path: Path,
    vercel: tuple[VercelApiState, str],
) -> None:
    dsn, _ = seeded
    state, base = vercel
    gone = "tKybBxqhQsGONE"  # a hook Vercel no longer has
    api = await _api(
        aiohttp_client, tmp_path, dsn, alertmanager, hooks_config(tmp_path, base, main_hook=gone)
    )
    resp = await api.post(URL, json=BODY, headers=as_user("admin"))
    assert resp.status == 502, await resp.text()
    doc = await resp.json()
    assert doc["error"] == "vercel_refused"
    assert "HTTP 404 not_found" in doc["reason"]
    assert "deleted" in doc["reason"]
    assert gone not in doc["reason"]
    assert state.hook_calls == []
    assert _audit(dsn) == []
    metrics = await (await api.get("/metrics")).text()
    assert _metric(metrics, "refused") == 1


async def test_the_hook_url_shows_up_in_no_log_or_answer(
    seeded: tuple[str, Any],
    alertmanager: str,
    aiohttp_client: Any,
    tmp_path: Path,
    vercel: tuple[VercelApiState, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every path through the hook call, with every logger at DEBUG (httpx logs request URLs
    at INFO): neither hook id appears in a log line, an answer or the audit log."""
    dsn, _ = seeded
    state, base = vercel
    caplog.set_level(logging.DEBUG)
    # Another test's common.logging setup may have left httpx at WARNING; here it must log.
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    answers = []
    api = await _api(aiohttp_client, tmp_path, dsn, alertmanager, hooks_config(tmp_path, base))
    for fault in (None, "500", "malformed"):
        if fault:
            state.faults.append(fault)
        resp = await api.post(URL, json=BODY, headers=as_user("admin"))
        answers.append(await resp.text())
    answers.append(await (await api.get("/metrics")).text())
    down = f"http://127.0.0.1:{free_port()}"
    sub = tmp_path / "down"
    sub.mkdir()
    api2 = await _api(aiohttp_client, sub, dsn, alertmanager, hooks_config(sub, down))
    answers.append(await (await api2.post(URL, json=BODY, headers=as_user("admin"))).text())
    sub = tmp_path / "gone"
    sub.mkdir()
    api3 = await _api(
        aiohttp_client, sub, dsn, alertmanager, hooks_config(sub, base, main_hook="tKybBxqhQsGONE")
    )
    answers.append(await (await api3.post(URL, json=BODY, headers=as_user("admin"))).text())
    assert len(state.hook_calls) == 2  # the good call and the garbage answer reached Vercel
    # httpx did log the calls (so the check below looks at real request lines)…
    assert any("integrations/deploy/<redacted>" in r.getMessage() for r in caplog.records)
    logged = "\n".join(
        f"{r.getMessage()} {json.dumps(vars(r), default=str)}" for r in caplog.records
    )
    audit = json.dumps([list(r) for r in _audit(dsn)], default=str)
    for secret in (MAIN_HOOK, "tKybBxqhQsGONE", PROJECT + "/"):
        assert secret not in logged
        assert all(secret not in a for a in answers)
        assert secret not in audit


def test_a_file_holding_no_hook_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    hook = {
        "hooks": [
            {
                "project": "web",
                "environment": "production",
                "git_branch": "main",
                "hook_url_file": _hook_file(tmp_path, "hook", secret),
            }
        ]
    }
    with pytest.raises(ConfigError) as err:
        write_config(tmp_path, deploy_hooks=hook)
    text = str(err.value)
    assert "deploy_hooks.hooks[0].hook_url_file" in text
    assert "not a deploy hook URL" in text
    assert "SECRET" not in text
    assert "slack" not in text


def test_two_hooks_for_one_branch_are_refused(tmp_path: Path) -> None:
    import yaml

    one = {"project": "web", "environment": "production", "git_branch": "main"}
    path = tmp_path / "api.yaml"
    (tmp_path / "s").write_text("x\n")
    path.write_text(
        yaml.safe_dump(
            {
                "database": {"conninfo": "host=127.0.0.1"},
                "auth": {"jwt_secret_file": str(tmp_path / "s"), "issuer": "https://x"},
                "alertmanager_url": "http://127.0.0.1:9",
                "deploy_hooks": {
                    "hooks": [
                        {**one, "hook_url_file": str(tmp_path / "s")},
                        {**one, "hook_url_file": str(tmp_path / "s")},
                    ]
                },
            }
        )
    )
    with pytest.raises(ConfigError, match="same project, environment and git_branch"):
        load_config(path, ApiConfig)


# --- the fake itself -------------------------------------------------------------------------


async def test_fake_hooks_behave_as_vercel_documents(
    aiohttp_client: Any,
) -> None:
    clock = [1_780_000_000.0]
    state = VercelApiState(token="t", clock=lambda: clock[0])
    state.hooks.append(FakeHook("prj_1", "hook1", "main", "production", "web"))
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        TestServer(fake_vercel(state))
    )
    path = "/v1/integrations/deploy/prj_1/hook1"
    # POST and GET both trigger (the docs: "send a GET or POST request").
    for method in ("POST", "GET"):
        resp = await client.request(method, path)
        assert resp.status == 200
        job = (await resp.json())["job"]
        assert job["state"] == "PENDING"
        assert job["createdAt"] == 1_780_000_000_000
        assert len(job["id"]) == 20
    assert [c.method for c in state.hook_calls] == ["POST", "GET"]
    # A wrong hook or project id: Vercel's error shape, nothing triggered.
    for wrong in ("/v1/integrations/deploy/prj_1/nohook", "/v1/integrations/deploy/prj_2/hook1"):
        resp = await client.post(wrong)
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"
    for bad in (f"{path}?buildCache=no", f"{path}?ref=main"):
        resp = await client.post(bad)
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "bad_request"
    assert len(state.hook_calls) == 2
    # Each trigger queued a deployment of the hook's branch, seen through the list API.
    clock[0] += 120
    resp = await client.get("/v6/deployments", headers={"Authorization": "Bearer t"})
    deployments = (await resp.json())["deployments"]
    assert [(d["meta"]["githubCommitRef"], d["target"], d["state"]) for d in deployments] == [
        ("main", "production", "READY")
    ] * 2


async def test_a_triggered_hook_reaches_the_recorder_as_deployment_webhooks(
    aiohttp_client: Any,
) -> None:
    """The demo's path: the hook queues a deployment in the fake, and the fake's webhook feed
    (fakes/vercel.py, what the recorder receives) reports it created, then succeeded."""
    import httpx

    from fakes.vercel import Webhooks

    clock = [1_780_000_000.0]
    state = VercelApiState(token="t", clock=lambda: clock[0])
    state.hooks.append(FakeHook("prj_1", "hook1", "main", "production", "web"))
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        TestServer(fake_vercel(state))
    )
    sent: list[dict[str, Any]] = []

    def recorder(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200)

    hooks = Webhooks(state, "http://recorder", "secret", None)
    with httpx.Client(transport=httpx.MockTransport(recorder)) as http:
        hooks.send_due(http)
        assert sent == []  # nothing happened yet
        assert (await client.post("/v1/integrations/deploy/prj_1/hook1")).status == 200
        clock[0] += 5
        hooks.send_due(http)
        clock[0] += 60
        hooks.send_due(http)
    assert [(e["type"], e["payload"]["target"]) for e in sent] == [
        ("deployment.created", "production"),
        ("deployment.succeeded", "production"),
    ]
    assert sent[0]["payload"]["deployment"]["meta"]["githubCommitRef"] == "main"
