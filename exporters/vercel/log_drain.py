"""Log drain records → request, error and firewall counts.

A request is a record with a `proxy` object (Vercel's edge saw a client request). A function
that logs three lines for one request sends three records with the same `requestId`, so
requests are de-duplicated by id over a bounded window. `proxy.statusCode` -1 marks a
background revalidation, not a client request, and is not counted as one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from exporters.vercel import labels as L
from exporters.vercel.series import BatchCounter, Labels

REQUEST_LABELS = ("project", "environment", "region", "status_class", "cache", "path_type")


class RecentIds:
    """The last `size` request ids, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, rid: str) -> bool:
        """True if `rid` was seen before; remembers it either way."""
        ids = self._ids
        if rid in ids:
            return True
        ids[rid] = None
        if len(ids) > self._size:
            ids.popitem(last=False)
        return False


@dataclass(slots=True)
class LogBatch:
    requests: dict[Labels, float] = field(default_factory=dict)
    errors: dict[Labels, float] = field(default_factory=dict)
    waf: dict[Labels, float] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    used: int = 0


class LogDrain:
    name = "logs"

    def __init__(self, projects: L.Projects, recent_ids: int = 200_000) -> None:
        self.projects = projects
        self.requests = BatchCounter(
            "vercel_requests_total",
            "Client requests seen by Vercel's edge, from the log drain, scaled by 1/sample rate.",
            REQUEST_LABELS,
        )
        self.errors = BatchCounter(
            "vercel_log_errors_total",
            "Log records at level error or fatal, from the log drain, scaled by 1/sample rate.",
            ("project", "environment", "source", "level"),
        )
        self.waf = BatchCounter(
            "vercel_firewall_actions_total",
            "Requests on which the Vercel firewall acted, by action, scaled by 1/sample rate.",
            ("project", "environment", "action"),
        )
        self._recent = RecentIds(recent_ids)

    def aggregate(self, records: Sequence[dict[str, Any]], weight: float) -> LogBatch:
        b = LogBatch()
        requests, errors, waf, skipped = b.requests, b.errors, b.waf, b.skipped
        project_of = self.projects
        seen = self._recent.seen
        for rec in records:
            project = project_of(rec.get("projectId"))
            env = L.environment(rec.get("environment"))
            level = rec.get("level")
            if level == "error" or level == "fatal":
                ekey = (project, env, L.one_of(rec.get("source"), L.LOG_SOURCES, "unknown"), level)
                errors[ekey] = errors.get(ekey, 0.0) + weight
            proxy = rec.get("proxy")
            if not isinstance(proxy, dict):
                continue
            status = proxy.get("statusCode")
            if status == -1:
                skipped["revalidation"] = skipped.get("revalidation", 0) + 1
                continue
            rid = rec.get("requestId")
            if isinstance(rid, str) and rid and seen(rid):
                skipped["duplicate"] = skipped.get("duplicate", 0) + 1
                continue
            if status is None:
                status = rec.get("statusCode")
            key = (
                project,
                env,
                L.region(proxy.get("region")),
                L.status_class(status),
                L.one_of(proxy.get("vercelCache"), L.CACHE),
                L.one_of(proxy.get("pathType"), L.PATH_TYPES),
            )
            requests[key] = requests.get(key, 0.0) + weight
            action = proxy.get("wafAction")
            if action is not None:
                wkey = (project, env, L.one_of(action, L.WAF_ACTIONS))
                waf[wkey] = waf.get(wkey, 0.0) + weight
            b.used += 1
        return b

    def apply(self, batch: LogBatch) -> None:
        self.requests.merge(batch.requests)
        self.errors.merge(batch.errors)
        self.waf.merge(batch.waf)

    def collectors(self) -> list[BatchCounter]:
        return [self.requests, self.errors, self.waf]
