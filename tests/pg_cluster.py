"""The throwaway PostgreSQL cluster for tests: skipped (failed under --require-integration)
where initdb is not installed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from compose import pg_cluster
from compose.pg_cluster import Cluster

__all__ = ["Cluster", "throwaway_cluster"]


@contextlib.contextmanager
def throwaway_cluster(settings: dict[str, str] | None = None) -> Iterator[Cluster]:
    if not pg_cluster.installed():
        pytest.skip("initdb not installed (apt-get install postgresql)")
    with pg_cluster.throwaway_cluster(settings) as c:
        yield c
