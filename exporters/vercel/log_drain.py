"""Log drain records → request, error and firewall counts.

A request is a record with a `proxy` object (Vercel's edge saw a client request). A function
that logs three lines for one request sends three records with the same `requestId`, so
requests are de-duplicated by id over a bounded window. `proxy.statusCode` -1 marks a
background revalidation, not a client request, and is not counted as one.

Vercel retries a delivery it thinks failed, so the same log lines can arrive twice: every line
carries an `id`, and a line that counts (an error, a request) whose id was seen within the last
hour (up to a bounded number of ids) is a replay, skipped whole and counted as such. A batch is
checked whole before any id is remembered, so a refused delivery leaves nothing behind that
would turn its retry into a replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporters.vercel import labels as L
from exporters.vercel.drain_body import DrainError
from exporters.vercel.series import BatchCounter, Labels

REQUEST_LABELS = ("project", "environment", "region", "status_class", "cache", "path_type")
# Log timestamps are ms since the epoch: anything outside what a UTC datetime can hold
# (years 1 to 9999) is not a time.
MIN_MS = -62_135_596_800_000
MAX_MS = 253_402_300_799_999
ID_TTL = 3600.0


class RecentIds:
    """Ids seen within the last `ttl` seconds, about `size` of them (never more than 1.25 x
    size), oldest forgotten first.

    `ids` maps an id's hash to when it was first seen (compare with now - ttl); the log drain
    reads and writes it directly in its hot loop, then calls `prune`. Hashes, not the ids: an
    int costs a third of a request id's string, and two ids among a few hundred thousand
    sharing a 64-bit hash is a one-in-10^13 chance of one line not counted. A plain dict in
    insertion order, pruned by rebuilding it when it is a quarter over size or its oldest entry
    has expired: cheaper per id than an OrderedDict, and a third of its memory."""

    def __init__(self, size: int, ttl: float = ID_TTL) -> None:
        self.size = size
        self.ttl = ttl
        self.ids: dict[int, float] = {}
        self._pruned = 0.0

    def __len__(self) -> int:
        return len(self.ids)

    def seen(self, rid: str, now: float) -> bool:
        t = self.ids.get(hash(rid))
        return t is not None and t > now - self.ttl

    def remember(self, rid: str, now: float) -> None:
        self.ids[hash(rid)] = now

    def prune(self, now: float) -> None:
        ids = self.ids
        if not ids:
            return
        oldest = now - self.ttl
        over = len(ids) > self.size + self.size // 4
        # An id remembered again after it expired keeps its place (with its new time): pruning
        # treats it as old, which only forgets it early.
        expired = ids[next(iter(ids))] <= oldest and now - self._pruned > self.ttl / 8
        if not (over or expired):
            return
        self._pruned = now
        keep = [(k, t) for k, t in ids.items() if t > oldest]
        ids.clear()
        ids.update(keep[len(keep) - self.size :] if self.size else ())


@dataclass(slots=True)
class LogBatch:
    requests: dict[Labels, float] = field(default_factory=dict)
    errors: dict[Labels, float] = field(default_factory=dict)
    waf: dict[Labels, float] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    used: int = 0


def check(records: Sequence[dict[str, Any]]) -> None:
    """Refuse a batch holding a time no clock can show (`timestamp`, ms since the epoch)."""
    for rec in records:
        ts = rec.get("timestamp")
        if ts is not None:
            try:
                if not MIN_MS <= ts <= MAX_MS:
                    raise DrainError(400, "out_of_range", "a record's timestamp is not a UTC time")
            except TypeError:
                pass  # not a number: not read, not refused


class LogDrain:
    name = "logs"

    def __init__(
        self,
        projects: L.Projects,
        recent_ids: int = 200_000,
        clock: Callable[[], float] = time.time,
        id_ttl: float = ID_TTL,
    ) -> None:
        self.projects = projects
        self.clock = clock
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
        self._recent = RecentIds(recent_ids, id_ttl)
        self._lines = RecentIds(recent_ids, id_ttl)

    def aggregate(self, records: Sequence[dict[str, Any]], weight: float) -> LogBatch:
        """Count a batch; apply merges the counts. The batch is checked whole first (check),
        then its ids are remembered as they are counted."""
        check(records)
        now = self.clock()
        b = LogBatch()
        requests, errors, waf, skipped = b.requests, b.errors, b.waf, b.skipped
        project_of = self.projects
        lines, reqs = self._lines.ids, self._recent.ids
        line_at, req_at = lines.get, reqs.get
        line_expired, req_expired = now - self._lines.ttl, now - self._recent.ttl
        for rec in records:
            level = rec.get("level")
            error = level == "error" or level == "fatal"
            proxy = rec.get("proxy")
            if not isinstance(proxy, dict):
                if not error:
                    continue  # counts nothing, so its id need not be remembered
                proxy = None
            line = rec.get("id")
            if isinstance(line, str) and line:
                h = hash(line)
                if (line_at(h) or line_expired) > line_expired:
                    skipped["replay"] = skipped.get("replay", 0) + 1
                    continue
                lines[h] = now
            project = project_of(rec.get("projectId"))
            env = L.environment(rec.get("environment"))
            if error:
                source = L.one_of(rec.get("source"), L.LOG_SOURCES, "unknown")
                ekey = (project, env, source, "error" if level == "error" else "fatal")
                errors[ekey] = errors.get(ekey, 0.0) + weight
            if proxy is None:
                continue
            status = proxy.get("statusCode")
            if status == -1:
                skipped["revalidation"] = skipped.get("revalidation", 0) + 1
                continue
            rid = rec.get("requestId")
            if isinstance(rid, str) and rid:
                h = hash(rid)
                if (req_at(h) or req_expired) > req_expired:
                    skipped["duplicate"] = skipped.get("duplicate", 0) + 1
                    continue
                reqs[h] = now
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
        self._lines.prune(now)
        self._recent.prune(now)
        return b

    def apply(self, batch: LogBatch) -> None:
        self.requests.merge(batch.requests)
        self.errors.merge(batch.errors)
        self.waf.merge(batch.waf)

    def collectors(self) -> list[BatchCounter]:
        return [self.requests, self.errors, self.waf]
