"""GET /api/infrastructure/deployments: the deployment_history rows the caller's policies show
(admins and developers every row, anyone else the deployments they made), newest first.

The spec gives no response interface for the list (DeploymentResponse answers its POST), so
each item carries the table's own columns under their own names.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.alertmanager import rfc3339
from api.bodies import deployments_query
from api.state import SERVICES, caller

_COLUMNS = (
    "id",
    "deployment_id",
    "environment",
    "git_branch",
    "git_commit_hash",
    "deployed_by",
    "deployment_status",
    "build_duration_ms",
    "deployment_url",
    "error_message",
    "deployed_at",
    "completed_at",
)
# Newest first; id breaks ties so that pages of equal times come out the same every time.
_LIST = f"""
SELECT {", ".join(_COLUMNS)}
FROM deployment_history
WHERE %(environment)s::text IS NULL OR environment = %(environment)s::text
ORDER BY deployed_at DESC, id
LIMIT %(limit)s
"""  # noqa: S608 - fixed column names, values are parameters


def _json(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return rfc3339(value)
    if value is None or isinstance(value, str | int):
        return value
    return str(value)  # UUIDs


async def list_deployments(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await caller(request)
    environment, limit = deployments_query(request)
    async with services.db.as_caller(who) as conn:
        cur = await conn.execute(_LIST, {"environment": environment, "limit": limit})
        rows = await cur.fetchall()
    return web.json_response(
        {"deployments": [dict(zip(_COLUMNS, map(_json, row), strict=True)) for row in rows]}
    )
