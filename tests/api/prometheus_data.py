"""A real Prometheus holding known data, for tests that read Prometheus through the API.

    with prometheus_with(openmetrics_text, tmp_path / "prom") as url:
        ...  # url answers /api/v1/query and /api/v1/query_range over exactly those samples

The samples are backfilled with `promtool tsdb create-blocks-from openmetrics` into a fresh data
directory before Prometheus starts on it, so they are there from its first query: no scraping,
no waiting for rule evaluations, and values the test can compute by hand. Prometheus scrapes
nothing (an empty scrape config) unless `config` says otherwise, so only these samples exist.

Timestamps: the backfilled blocks must lie inside the retention window (45 days here, from
compose.processes.prometheus_flags) and not in the future; samples of the last few hours are
the safe choice. `openmetrics()` builds the text from (name, labels, [(unix seconds, value)]).

`prometheus_data` is a module-scoped fixture factory for the common case; `prometheus_with` is
the context manager under it for tests that need several instances or their own config.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from compose.processes import free_port, prometheus_argv, spawn, stop, wait_ready
from tests.conftest import binary

# A scrape config without scrape jobs: the backfilled samples are all Prometheus holds.
EMPTY_CONFIG = "global:\n  evaluation_interval: 1m\n"

Points = Sequence[tuple[float, float]]
SeriesSpec = tuple[str, Mapping[str, str], Points]


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def openmetrics(series: Iterable[SeriesSpec]) -> str:
    """OpenMetrics text for promtool: every series typed `gauge` (a recording rule's output is
    untyped; gauge is what promtool accepts for arbitrary values), one `# EOF` at the end.
    Series of one name are grouped under one TYPE line, as the format requires."""
    by_name: dict[str, list[tuple[Mapping[str, str], Points]]] = {}
    for name, labels, points in series:
        by_name.setdefault(name, []).append((labels, points))
    lines = []
    for name, items in by_name.items():
        # Recording-rule names hold colons, which OpenMetrics family names may.
        lines.append(f"# TYPE {name} gauge")
        for labels, points in items:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            sel = f"{name}{{{text}}}" if text else name
            # promtool keeps only increasing timestamps of a series (it silently drops the
            # rest), so the points are written in time order whatever order they came in.
            lines.extend(f"{sel} {_value(v)} {t:.3f}" for t, v in sorted(points))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def backfill(text: str, data_dir: Path, work: Path) -> None:
    """Write `text` into TSDB blocks in `data_dir` (promtool's own importer)."""
    promtool = binary("promtool")
    data_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    source = work / "backfill.om"
    source.write_text(text)
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"promtool backfill failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


@contextlib.contextmanager
def prometheus_with(text: str | None, home: Path, config: str = EMPTY_CONFIG) -> Iterator[str]:
    """A running Prometheus over `text` (OpenMetrics, or None for an empty TSDB); its URL."""
    binary("prometheus")
    home.mkdir(parents=True, exist_ok=True)
    data = home / "data"
    if text is not None:
        backfill(text, data, home)
    (home / "prometheus.yml").write_text(config)
    port = free_port()
    proc = spawn(prometheus_argv(home / "prometheus.yml", port, data), home / "prometheus.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def prometheus_data(
    build: Callable[[], str], config: str = EMPTY_CONFIG
) -> Callable[..., Iterator[str]]:
    """A module-scoped fixture: Prometheus over the OpenMetrics text `build()` returns (called
    once, when the fixture is first used, so "now"-relative timestamps are fresh).

        known = prometheus_data(lambda: openmetrics([...]))   # in the test module

        def test_x(known: str) -> None: ...                   # the Prometheus URL
    """

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        with prometheus_with(build(), tmp_path_factory.mktemp("prometheus"), config) as url:
            yield url

    return fixture
