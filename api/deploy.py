"""POST /api/infrastructure/deployments: start a deployment through the Vercel Deploy Hook
configured for that project, environment and branch; answer the spec's DeploymentResponse
with deployment_status "queued".

What the answer's deployment_id is: the hook's job id (Vercel's answer to a hook is a job, not
yet a deployment). The deployment itself, with Vercel's own id, arrives moments later through
the deployment webhooks the recorder receives (deployment.created, then succeeded or error), and
lands in deployment_history like every other deployment.

Ordering (Vercel and the database share no transaction), as api/alerts.py does it:

1. Inside the caller's transaction: may the caller write deployment_history (the spec's policy
   "Admin full access to deployments" answers, through a probe INSERT that is rolled back), and
   the estimate, read from deployment_history.
2. The one hook call. If it fails, the transaction rolls back: no audit row, 503 (unreachable,
   5xx, rate limited) or 502 (Vercel refused the hook, or answered without a job).
3. The audit row and the commit. A deploy hook cannot be taken back, so if these fail after the
   hook queued a build, the log says so (with the hook's name and the job id) and the answer is
   the database's 503.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from aiohttp import web

from api.bodies import DeploymentRequest, no_query, read_body
from api.db import policy_admits
from api.errors import ApiError
from api.state import REQUEST_ID, SERVICES, caller
from api.vercel_hooks import Hook, HookFailed, VercelHooks
from schema import writes

log = logging.getLogger(__name__)
TABLE = "deployment_history"

# A row the deployments policy judges like any other (its USING is its WITH CHECK). Never kept:
# see api.db.policy_admits. A fresh deployment_id each time, so concurrent probes never wait on the
# column's UNIQUE index for each other.
_DEPLOYMENTS_PROBE = """
INSERT INTO deployment_history (deployment_id, environment, git_branch, git_commit_hash)
VALUES ('wsinfra-api-probe:' || gen_random_uuid(), 'preview', 'wsinfra-api-probe', 'probe')
"""

# The median build time of the environment's newest successful builds, in milliseconds.
_ESTIMATE = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY build_duration_ms)
FROM (
    SELECT build_duration_ms FROM deployment_history
    WHERE environment = %s AND deployment_status = 'success' AND build_duration_ms > 0
    ORDER BY deployed_at DESC
    LIMIT %s
) AS recent
"""


def _pick(hooks: VercelHooks | None, req: DeploymentRequest) -> Hook:
    """The hook for the request, or a 422 naming what is configured."""
    if hooks is None or not hooks.hooks:
        raise ApiError(
            "invalid_request",
            "no deploy hooks are configured (deploy_hooks in the API's config)",
        )
    wanted = req.deployment_config.project if req.deployment_config else None
    projects = hooks.projects
    if wanted is None:
        if len(projects) > 1:
            raise ApiError(
                "invalid_request",
                f"deploy hooks are configured for several projects ({', '.join(projects)}): "
                "name one in deployment_config.project",
            )
        wanted = projects[0]
    elif wanted not in projects:
        raise ApiError(
            "invalid_request",
            f"no deploy hooks for project {wanted!r}; configured: {hooks.configured()}",
        )
    hook = hooks.find(wanted, req.environment, req.git_branch)
    if hook is None:
        raise ApiError(
            "invalid_request",
            f"no deploy hook for project {wanted}, environment {req.environment}, branch "
            f"{req.git_branch!r}; configured: {hooks.configured()}",
        )
    return hook


async def _estimate_minutes(
    conn: psycopg.AsyncConnection[Any], hooks: VercelHooks, env: str
) -> int:
    cur = await conn.execute(_ESTIMATE, (env, hooks.estimate_sample))
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return hooks.default_estimate_minutes
    # Whole minutes, rounded up: "about 2 minutes" for a 61-second build, never 0.
    return max(1, -(-int(row[0]) // 60_000))


async def create_deployment(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await caller(request)
    no_query(request)
    req = await read_body(request, DeploymentRequest, services.settings.max_body_bytes)
    hooks = services.deploy_hooks
    job = None
    hook = None
    try:
        async with services.db.as_caller(who) as conn:
            # First whether the caller may deploy at all: a caller who may not learns nothing
            # about which hooks exist.
            if not await policy_admits(conn, _DEPLOYMENTS_PROBE):
                raise ApiError("forbidden", "row-level security does not let you deploy")
            hook = _pick(hooks, req)
            assert hooks is not None  # _pick refused otherwise
            if req.git_commit_hash is not None:
                # A hook builds the head of its branch; deploying another commit silently would
                # be worse than saying no.
                raise ApiError(
                    "invalid_request",
                    "git_commit_hash: a deploy hook builds the newest commit of its branch and "
                    "cannot deploy a given one; omit git_commit_hash",
                )
            minutes = await _estimate_minutes(conn, hooks, req.environment)
            build_cache = req.deployment_config.build_cache if req.deployment_config else True
            try:
                job = await hooks.trigger(hook, build_cache=build_cache)
            except HookFailed as exc:
                code = "vercel_unavailable" if exc.unavailable else "vercel_refused"
                raise ApiError(
                    code,
                    f"deploy hook {hook.name}: {exc.reason}; nothing was deployed or recorded",
                ) from None
            await writes.append_audit(
                conn,
                who.audit(
                    "deployment.create",
                    TABLE,
                    job.id,
                    None,
                    {
                        "hook": {
                            "project": hook.project,
                            "environment": hook.environment,
                            "git_branch": hook.git_branch,
                        },
                        "build_cache": build_cache,
                        "job": {
                            "id": job.id,
                            "state": job.state,
                            "created_at_ms": job.created_at_ms,
                        },
                        "estimated_duration_minutes": minutes,
                    },
                    request[REQUEST_ID],
                ),
            )
    except BaseException:
        if job is not None and hook is not None:
            # Vercel queued the build; only our record of it failed. It cannot be taken back.
            log.error(
                "deployment started without its audit row",
                extra={"hook": hook.name, "job_id": job.id},
            )
        raise
    return web.json_response(
        {
            "deployment_id": job.id,
            "estimated_duration_minutes": minutes,
            "deployment_status": "queued",
        },
        status=202,
    )
