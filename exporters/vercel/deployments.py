"""Deployments from the REST API, refreshed incrementally, counted exactly once.

Split as client → immutable snapshot → collector:
- `DeploymentsSource` is the vendor adapter: it asks the REST API through the shared client
  (api.make_upstream), keeps each project's state (on the event loop), is driven by a
  `common.refresh.RefreshLoop` (every `refresh_interval`; after a failure, again no sooner than
  the rate-limit reset), and after every refresh publishes `latest`, an immutable
  `DeploymentsSnapshot`;
- `view()` is what one scrape takes (on the event loop): that snapshot and the client's figures;
- collector.py renders it, touching neither.

First load: every deployment created within `lookback`. Each later refresh asks only for
deployments created since the oldest one still in flight or the newest one seen (minus an
overlap for clock skew between Vercel's hosts), page by page through `pagination.next`.
Pages are gathered whole before anything is applied: a refresh that fails half-way changes
nothing, and the last good snapshot keeps being served.

A deployment is counted (state counter, build and queue histograms) when it is first seen in
a final state. Which ones were counted is kept in `state_file`, so a restart counts neither
twice nor skips those that finished while the exporter was down; without a state file the
first load is taken as the baseline and nothing before it is counted.

Staleness is per project: a project refreshed within `stale_after` has its gauges served; one
that has not is left out and `vercel_up` is 0 (collector.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.refresh import RefreshLoop
from common.upstream import TRANSIENT, Upstream, UpstreamError
from exporters.vercel.api import PREFIX, WHAT
from exporters.vercel.config import Api
from exporters.vercel.series import BatchCounter, BatchHistogram
from exporters.vercel.snapshot import ApiView, DeploymentsSnapshot, PollingView, ProjectView

log = logging.getLogger("exporters.vercel.deployments")

FINAL = {"READY": "ready", "ERROR": "error", "CANCELED": "canceled", "DELETED": "deleted"}
IN_FLIGHT = frozenset({"QUEUED", "INITIALIZING", "BUILDING", "BLOCKED"})
TARGETS = ("production", "preview", "staging")
RESULTS = ("success", "failure")
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


class DeploymentsSource:
    """The poller: per-project state on the event loop, an immutable snapshot after each refresh."""

    def __init__(
        self,
        cfg: Api,
        projects: dict[str, str],
        upstream: Upstream,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.cfg = cfg
        self.upstream = upstream
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
        # Refreshes by result (vercel_api_refreshes_total), counted as each one ends.
        self.results = dict.fromkeys(RESULTS, 0)
        # Every `refresh_interval`; after a failure again at the same pace, but never before
        # the reset a rate limit named. Its own error counter is left out: vercel_api_errors_total
        # (the client's failed requests by the same reasons) already counts what fails a refresh.
        self.loop: RefreshLoop[DeploymentsSnapshot] = RefreshLoop(
            "vercel deployments",
            self.refresh,
            interval=cfg.refresh_interval,
            stale_after=cfg.stale_after,
            first_backoff=cfg.refresh_interval,
            errors_metric=False,
            clock=clock,
            sleep=sleep,
        )
        self._load_state()
        self.latest = self._snapshot()

    async def aclose(self) -> None:
        await self.upstream.aclose()

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
        """Every deployment created since `since_ms`, newest first, all pages or an
        UpstreamError."""
        found: dict[str, Any] = {}
        until: int | None = None
        for _ in range(MAX_PAGES):
            doc = await self._page(project_id, since_ms, until)
            items = doc.get("deployments") if isinstance(doc, dict) else None
            pagination = doc.get("pagination") if isinstance(doc, dict) else None
            if not isinstance(items, list) or not isinstance(pagination, dict):
                self.upstream.stats.errors["malformed"] += 1
                raise UpstreamError("malformed", "deployments: unexpected response shape")
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
                self.upstream.stats.errors["malformed"] += 1
                raise UpstreamError("malformed", "deployments: pagination.next does not move back")
            if nxt < since_ms:
                return found
            until = nxt
        raise UpstreamError("malformed", f"deployments: more than {MAX_PAGES} pages")

    async def _page(self, project_id: str, since_ms: int, until: int | None) -> Any:
        query: dict[str, Any] = {"projectId": project_id, "since": since_ms}
        if until is not None:
            query["until"] = until
        query["limit"] = PAGE_LIMIT
        if self.cfg.team_id:
            query["teamId"] = self.cfg.team_id
        up = self.upstream
        attempt = 0
        while True:
            try:
                return await up.get_json(_ENDPOINT, "/v6/deployments", query)
            except UpstreamError as exc:
                attempt += 1
                if exc.reason in TRANSIENT and attempt < 3:
                    await up.sleep(0.5 * 2**attempt)
                    continue
                if exc.reason == "rate_limited" and exc.retry_at is not None and attempt < 3:
                    wait = exc.retry_at - self.clock()
                    if wait <= up.max_wait:
                        up.stats.waited_seconds += max(wait, 0.0)
                        await up.sleep(max(wait, 0.0))
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

    async def refresh(self) -> DeploymentsSnapshot:
        """Refresh every project (for the refresh loop). A project that answers is applied; one
        that fails keeps its state as of its last success. The new snapshot is published either
        way; raises UpstreamError (for the loop: back-off until any reset named) when any
        project failed."""
        failed: list[tuple[str, UpstreamError]] = []
        ok = False
        try:
            applied = False
            for pid, ps in self.projects.items():
                try:
                    await self.refresh_project(pid)
                    applied = True
                except UpstreamError as exc:
                    failed.append((ps.name, exc))
            # A failed project's state is as of its last success, so saving is right for it
            # too; not saving after a partial success would let a restart count the others' again.
            if applied:
                self._save_state()
            ok = not failed
        except Exception as exc:  # a bug here must not stop the loop (nor the drains)
            log.exception("deployments refresh crashed")
            raise UpstreamError("other", f"refresh crashed: {type(exc).__name__}") from None
        finally:
            self.results["success" if ok else "failure"] += 1
            self.latest = self._snapshot()
        if failed:
            raise _summary(failed)
        return self.latest

    async def poll(self) -> bool:
        """One refresh as the background loop runs it (timed, its wait decided); True if every
        project answered."""
        await self.loop.refresh_once()
        return self.loop.failures_in_a_row == 0

    # -- the snapshot --------------------------------------------------------------------------

    def _snapshot(self) -> DeploymentsSnapshot:
        projects = []
        for ps in self.projects.values():
            per_target = dict.fromkeys(TARGETS, 0)
            for d in ps.in_flight.values():
                per_target[d.target] = per_target.get(d.target, 0) + 1
            prod = ps.production
            projects.append(
                ProjectView(
                    name=ps.name,
                    last_success=ps.last_success,
                    in_progress=tuple(sorted(per_target.items())),
                    last_ready=tuple(sorted(ps.last_ready_s.items())),
                    production=(prod.commit, prod.branch) if prod is not None else None,
                )
            )
        series = (self.deployments, self.build, self.queue, self.vanished, self.bad_records)
        return DeploymentsSnapshot(tuple(projects), tuple(s.freeze() for s in series))

    def view(self) -> PollingView:
        """What one scrape serves: the latest snapshot, and the client's and the loop's figures
        now (call on the event loop that refreshes)."""
        return PollingView(
            deployments=self.latest,
            api=ApiView(
                families=tuple(self.upstream.metrics(PREFIX, WHAT)),
                waited_seconds=self.upstream.stats.waited_seconds,
                refreshes=tuple((r, float(n)) for r, n in self.results.items()),
                refresh_duration=self.loop.last_duration,
            ),
            stale_after=self.cfg.stale_after,
        )


def _summary(failed: list[tuple[str, UpstreamError]]) -> UpstreamError:
    """One error for the loop: the first failure's reason, every project's in the detail, and
    the latest time a rate limit said to come back."""
    detail = "; ".join(f"{name}: {exc.reason}: {exc.detail}" for name, exc in failed)
    waits = [exc.retry_at for _, exc in failed if exc.retry_at is not None]
    return UpstreamError(failed[0][1].reason, detail[:500], max(waits) if waits else None)
