"""Deployments from the REST API, refreshed incrementally, counted exactly once.

First load: every deployment created within `lookback`. Each later refresh asks only for
deployments created since the oldest one still in flight or the newest one seen (minus an
overlap for clock skew between Vercel's hosts), page by page through `pagination.next`.
Pages are gathered whole before anything is applied: a refresh that fails half-way changes
nothing, and the last good snapshot keeps being served.

A deployment is counted (state counter, build and queue histograms) when it is first seen in
a final state. Which ones were counted is kept in `state_file`, so a restart counts neither
twice nor skips those that finished while the exporter was down; without a state file the
first load is taken as the baseline and nothing before it is counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from exporters.vercel.api import RETRYABLE, ApiError, VercelApi
from exporters.vercel.config import Api
from exporters.vercel.series import BatchCounter, BatchHistogram

log = logging.getLogger("exporters.vercel.deployments")

FINAL = {"READY": "ready", "ERROR": "error", "CANCELED": "canceled", "DELETED": "deleted"}
IN_FLIGHT = frozenset({"QUEUED", "INITIALIZING", "BUILDING", "BLOCKED"})
TARGETS = ("production", "preview", "staging")
BUILD_BUCKETS = (15, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200, 1800, 2700)
QUEUE_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
PAGE_LIMIT = 100
MAX_PAGES = 1000  # 100,000 deployments: beyond that a refresh is a loop, not a listing
_ENDPOINT = "deployments"


@dataclass(slots=True)
class Deployment:
    uid: str
    target: str
    state: str
    created_ms: int
    building_ms: int | None
    ready_ms: int | None
    commit: str
    branch: str


def target_of(value: object) -> str:
    if value is None:
        return "preview"  # Vercel: preview deployments have no target
    return value if isinstance(value, str) and value in TARGETS else "other"


def _ms(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value > 0 else None


def parse(raw: object) -> Deployment | None:
    """One list item; None if it lacks what we need (counted, never guessed)."""
    if not isinstance(raw, dict):
        return None
    uid = raw.get("uid")
    created = _ms(raw.get("createdAt")) or _ms(raw.get("created"))
    state = raw.get("readyState") or raw.get("state")
    if not isinstance(uid, str) or not uid or created is None or not isinstance(state, str):
        return None
    meta = raw.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    sha = (
        meta.get("githubCommitSha") or meta.get("gitlabCommitSha") or meta.get("bitbucketCommitSha")
    )
    ref = (
        meta.get("githubCommitRef") or meta.get("gitlabCommitRef") or meta.get("bitbucketCommitRef")
    )
    return Deployment(
        uid=uid,
        target=target_of(raw.get("target")),
        state=state.upper(),
        created_ms=created,
        building_ms=_ms(raw.get("buildingAt")),
        ready_ms=_ms(raw.get("ready")),
        commit=sha[:12] if isinstance(sha, str) else "",
        branch=ref[:100] if isinstance(ref, str) else "",
    )


@dataclass(slots=True)
class ProjectState:
    name: str
    loaded: bool = False
    watermark_ms: int = 0  # newest `created` seen
    in_flight: dict[str, Deployment] = field(default_factory=dict)
    last_ready_s: dict[str, float] = field(default_factory=dict)
    production: Deployment | None = None
    last_success: float | None = None
    # Counted uids → created ms, pruned to the lookback window.
    counted: dict[str, int] = field(default_factory=dict)
    # From the state file: deployments created after this were not known to the last run.
    resume_after_ms: int | None = None
    resume_in_flight: set[str] = field(default_factory=set)


class DeploymentTracker:
    def __init__(
        self,
        cfg: Api,
        projects: dict[str, str],
        api: VercelApi,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.api = api
        self.clock = clock
        self.projects = {pid: ProjectState(name) for pid, name in projects.items()}
        self.deployments = BatchCounter(
            "vercel_deployments_total",
            "Deployments that reached a final state (ready, error, canceled, deleted), counted once each.",
            ("project", "target", "state"),
        )
        self.deployments.init(
            (p.name, t, s) for p in self.projects.values() for t in TARGETS for s in FINAL.values()
        )
        self.build = BatchHistogram(
            "vercel_deployment_build_duration_seconds",
            "Build time of ready deployments (ready − buildingAt).",
            ("project", "target"),
            BUILD_BUCKETS,
        )
        self.queue = BatchHistogram(
            "vercel_deployment_queue_duration_seconds",
            "Time deployments waited before building (buildingAt − createdAt).",
            ("project", "target"),
            QUEUE_BUCKETS,
        )
        self.vanished = BatchCounter(
            "vercel_deployments_vanished_total",
            "In-flight deployments that disappeared from the API before reaching a final state.",
            ("project",),
        )
        self.bad_records = BatchCounter(
            "vercel_api_records_invalid_total",
            "Deployment records skipped: missing fields, or timestamps out of order (clock skew).",
            ("project", "reason"),
        )
        self.refresh_seconds: float | None = None
        self.refreshes = BatchCounter(
            "vercel_api_refreshes_total", "Deployment refreshes by result.", ("result",)
        )
        self.refreshes.init([("success",), ("failure",)])
        self.next_refresh_not_before = 0.0
        self._load_state()

    # -- persistence ---------------------------------------------------------------------------

    def _load_state(self) -> None:
        path = self.cfg.state_file
        if path is None or not path.exists():
            return
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            for pid, st in doc.get("projects", {}).items():
                ps = self.projects.get(pid)
                if ps is None:
                    continue
                ps.counted = {str(k): int(v) for k, v in st["counted"].items()}
                ps.resume_after_ms = int(st["watermark_ms"])
                ps.resume_in_flight = {str(u) for u in st.get("in_flight", [])}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # A broken state file costs at most a baseline reload, never a crash.
            log.warning(
                "ignoring unreadable state file", extra={"path": str(path), "error": str(exc)}
            )

    def _save_state(self) -> None:
        path = self.cfg.state_file
        if path is None:
            return
        doc = {
            "version": 1,
            "projects": {
                pid: {
                    "watermark_ms": ps.watermark_ms,
                    "counted": ps.counted,
                    "in_flight": sorted(ps.in_flight),
                }
                for pid, ps in self.projects.items()
                if ps.loaded
            },
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write state file", extra={"path": str(path), "error": exc.strerror})

    # -- refresh -------------------------------------------------------------------------------

    async def _list(self, project_id: str, since_ms: int) -> dict[str, Any]:
        """Every deployment created since `since_ms`, newest first, all pages or an ApiError."""
        found: dict[str, Any] = {}
        until: int | None = None
        for _ in range(MAX_PAGES):
            doc = await self._page(project_id, since_ms, until)
            items = doc.get("deployments") if isinstance(doc, dict) else None
            pagination = doc.get("pagination") if isinstance(doc, dict) else None
            if not isinstance(items, list) or not isinstance(pagination, dict):
                self.api.stats.errors["malformed"] += 1
                raise ApiError("malformed", "deployments: unexpected response shape")
            for item in items:
                uid = item.get("uid") if isinstance(item, dict) else None
                # A deployment moving between pages while we page shows up twice: keep one.
                found.setdefault(uid if isinstance(uid, str) else f"?{len(found)}", item)
            nxt = pagination.get("next")
            if nxt is None or not items:
                return found
            if (
                isinstance(nxt, bool)
                or not isinstance(nxt, int)
                or (until is not None and nxt >= until)
            ):
                self.api.stats.errors["malformed"] += 1
                raise ApiError("malformed", "deployments: pagination.next does not move back")
            if nxt < since_ms:
                return found
            until = nxt
        raise ApiError("malformed", f"deployments: more than {MAX_PAGES} pages")

    async def _page(self, project_id: str, since_ms: int, until: int | None) -> Any:
        attempt = 0
        while True:
            try:
                return await self.api.get(
                    _ENDPOINT,
                    "/v6/deployments",
                    {
                        "projectId": project_id,
                        "since": since_ms,
                        "until": until,
                        "limit": PAGE_LIMIT,
                    },
                )
            except ApiError as exc:
                attempt += 1
                if exc.reason in RETRYABLE and attempt < 3:
                    await self.api.sleep(0.5 * 2**attempt)
                    continue
                if exc.reason == "rate_limited" and exc.retry_at is not None and attempt < 3:
                    wait = exc.retry_at - self.clock()
                    if wait <= self.api.max_wait:
                        self.api.stats.waited_seconds += max(wait, 0.0)
                        await self.api.sleep(max(wait, 0.0))
                        continue
                raise

    def _since(self, ps: ProjectState, now: float) -> int:
        if not ps.loaded:
            return int((now - self.cfg.lookback) * 1000)
        oldest = min((d.created_ms for d in ps.in_flight.values()), default=ps.watermark_ms)
        return max(
            min(oldest, ps.watermark_ms) - int(self.cfg.overlap * 1000),
            int((now - self.cfg.lookback) * 1000),
        )

    async def refresh_project(self, project_id: str) -> None:
        ps = self.projects[project_id]
        now = self.clock()
        since = self._since(ps, now)
        raw = await self._list(project_id, since)
        self._apply(ps, raw, since, now)

    def _should_count(self, ps: ProjectState, d: Deployment) -> bool:
        if d.uid in ps.counted:
            return False
        if ps.loaded:
            return True
        if ps.resume_after_ms is None:
            return False  # first run ever: this load is the baseline
        return d.created_ms > ps.resume_after_ms or d.uid in ps.resume_in_flight

    def _apply(self, ps: ProjectState, raw: dict[str, Any], since: int, now: float) -> None:
        counts: dict[tuple[str, ...], float] = {}
        bad: dict[tuple[str, ...], float] = {}
        build = self.build.batch()
        queue = self.queue.batch()
        seen: set[str] = set()
        for item in raw.values():
            d = parse(item)
            if d is None:
                bad[(ps.name, "missing_fields")] = bad.get((ps.name, "missing_fields"), 0) + 1
                continue
            seen.add(d.uid)
            ps.watermark_ms = max(ps.watermark_ms, d.created_ms)
            final = FINAL.get(d.state)
            if final is None:
                # QUEUED, BUILDING… and states newer than this code: asked again until final.
                ps.in_flight[d.uid] = d
                continue
            ps.in_flight.pop(d.uid, None)
            if d.state == "READY" and d.ready_ms:
                ready_s = d.ready_ms / 1000
                if ready_s > ps.last_ready_s.get(d.target, 0):
                    ps.last_ready_s[d.target] = ready_s
                if d.target == "production" and (
                    ps.production is None or d.ready_ms >= (ps.production.ready_ms or 0)
                ):
                    ps.production = d
            if not self._should_count(ps, d):
                ps.counted.setdefault(d.uid, d.created_ms)
                continue
            ps.counted[d.uid] = d.created_ms
            key = (ps.name, d.target, final)
            counts[key] = counts.get(key, 0) + 1
            if d.building_ms is not None:
                q = (d.building_ms - d.created_ms) / 1000
                if q >= 0:
                    queue.observe((ps.name, d.target), q)
                else:
                    bad[(ps.name, "clock_skew")] = bad.get((ps.name, "clock_skew"), 0) + 1
                if d.state == "READY" and d.ready_ms is not None:
                    b = (d.ready_ms - d.building_ms) / 1000
                    if b >= 0:
                        build.observe((ps.name, d.target), b)
                    else:
                        bad[(ps.name, "clock_skew")] = bad.get((ps.name, "clock_skew"), 0) + 1
        # In flight last time, inside this window, absent now: deleted between refreshes.
        gone = [u for u, d in ps.in_flight.items() if u not in seen and d.created_ms >= since]
        for uid in gone:
            del ps.in_flight[uid]
        if gone and ps.loaded:
            self.vanished.merge({(ps.name,): float(len(gone))})
        horizon = int((now - self.cfg.lookback) * 1000)
        ps.counted = {u: c for u, c in ps.counted.items() if c >= horizon}
        ps.in_flight = {u: d for u, d in ps.in_flight.items() if d.created_ms >= horizon}
        self.deployments.merge(counts)
        self.build.merge(build)
        self.queue.merge(queue)
        if bad:
            self.bad_records.merge(bad)
        ps.loaded = True
        ps.last_success = now

    async def refresh(self) -> bool:
        """Refresh every project; True if all succeeded."""
        start = time.perf_counter()
        ok = True
        applied = False
        for pid, ps in self.projects.items():
            try:
                await self.refresh_project(pid)
                applied = True
            except ApiError as exc:
                ok = False
                if exc.retry_at is not None:
                    self.next_refresh_not_before = max(self.next_refresh_not_before, exc.retry_at)
                log.warning(
                    "deployments refresh failed",
                    extra={"project": ps.name, "reason": exc.reason, "detail": exc.detail},
                )
        self.refresh_seconds = time.perf_counter() - start
        self.refreshes.merge({("success" if ok else "failure",): 1.0})
        # A failed project's state is as of its last success, so saving is right for it too;
        # not saving after a partial success would let a restart count the others' again.
        if applied:
            self._save_state()
        return ok

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug here must not stop the exporter serving drains
                log.exception("deployments refresh crashed")
            wait = max(self.cfg.refresh_interval, self.next_refresh_not_before - self.clock())
            await asyncio.sleep(wait)

    # -- metrics -------------------------------------------------------------------------------

    def fresh(self, ps: ProjectState, now: float) -> bool:
        return ps.last_success is not None and now - ps.last_success <= self.cfg.stale_after

    def up(self) -> bool:
        now = self.clock()
        return all(self.fresh(ps, now) for ps in self.projects.values())

    def collectors(self) -> list[BatchCounter | BatchHistogram]:
        return [
            self.deployments,
            self.build,
            self.queue,
            self.vanished,
            self.bad_records,
            self.refreshes,
        ]

    def snapshot(self) -> Iterable[Metric]:
        now = self.clock()
        building = GaugeMetricFamily(
            "vercel_deployments_in_progress",
            "Deployments queued or building now (cached: last successful refresh).",
            labels=["project", "target"],
        )
        last_ready = GaugeMetricFamily(
            "vercel_deployment_last_ready_timestamp_seconds",
            "When the newest ready deployment became ready (Unix time; cached).",
            labels=["project", "target"],
        )
        prod = InfoMetricFamily(
            "vercel_production_deployment",
            "The newest ready production deployment per project (cached): commit and branch.",
            labels=["project"],
        )
        last_ok = GaugeMetricFamily(
            "vercel_api_last_success_timestamp_seconds",
            "When deployments were last refreshed successfully (Unix time).",
            labels=["project"],
        )
        for ps in self.projects.values():
            if ps.last_success is not None:
                last_ok.add_metric([ps.name], ps.last_success)
            if not self.fresh(ps, now):
                continue  # stale: say nothing rather than something old
            per_target = {t: 0 for t in TARGETS}
            for d in ps.in_flight.values():
                per_target[d.target] = per_target.get(d.target, 0) + 1
            for t, n in sorted(per_target.items()):
                building.add_metric([ps.name, t], n)
            for t, ts in sorted(ps.last_ready_s.items()):
                last_ready.add_metric([ps.name, t], ts)
            if ps.production is not None:
                prod.add_metric(
                    [ps.name],
                    {"commit": ps.production.commit, "branch": ps.production.branch},
                )
        yield from (building, last_ready, prod, last_ok)
        stats = self.api.stats
        req = CounterMetricFamily(
            "vercel_api_requests",
            "Requests made to the Vercel REST API, by endpoint and HTTP code ('error' = no answer).",
            labels=["endpoint", "code"],
        )
        for (ep, code), n in sorted(stats.requests.items()):
            req.add_metric([ep, code], n)
        errors = CounterMetricFamily(
            "vercel_api_errors",
            "Failed Vercel REST API requests by reason (auth, rate_limited, server, timeout, connect, malformed, client).",
            labels=["reason"],
        )
        for reason in (
            "auth",
            "rate_limited",
            "server",
            "timeout",
            "connect",
            "malformed",
            "client",
        ):
            errors.add_metric([reason], stats.errors.get(reason, 0))
        remaining = GaugeMetricFamily(
            "vercel_api_rate_limit_remaining",
            "X-RateLimit-Remaining from the last answer, per endpoint.",
            labels=["endpoint"],
        )
        for ep, n in sorted(stats.limit_remaining.items()):
            remaining.add_metric([ep], n)
        waited = CounterMetricFamily(
            "vercel_api_rate_limit_wait_seconds",
            "Time spent waiting for Vercel rate-limit windows (and our own ceiling) to reset.",
            value=stats.waited_seconds,
        )
        yield from (req, errors, remaining, waited)
        if self.refresh_seconds is not None:
            yield GaugeMetricFamily(
                "vercel_api_refresh_duration_seconds",
                "How long the last deployments refresh took.",
                value=self.refresh_seconds,
            )
