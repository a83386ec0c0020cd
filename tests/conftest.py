"""Shared pytest set-up: the --require-integration switch, and where the real binaries are."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-integration",
        action="store_true",
        default=False,
        help="turn every skip into a failure (CI): integration tests must run, not skip",
    )
    parser.addoption(
        "--update-golden", action="store_true", default=False, help="rewrite golden files"
    )


# Fixtures that reach a real database: a test that uses one is an integration test.
DB_FIXTURES = frozenset({"pg_dsn", "migrated_dsn"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The folder says the kind: tests/unit never needs a database (or anything but loopback),
    and a test that uses a database is marked `integration`, so the fast loop
    (`-m "not integration and not slow"`) runs every unit test and nothing that needs a server."""
    wrong = []
    for item in items:
        integration = item.get_closest_marker("integration") is not None
        uses_db = bool(DB_FIXTURES & set(getattr(item, "fixturenames", ())))
        in_unit = Path(str(item.path)).is_relative_to(ROOT / "tests" / "unit")
        if uses_db and not integration:
            wrong.append(f"{item.nodeid}: uses a database, so mark it integration")
        if in_unit and (integration or uses_db):
            wrong.append(f"{item.nodeid}: tests/unit is for tests that need no server; move it")
    if wrong:
        raise pytest.UsageError("test layout:\n  " + "\n  ".join(wrong))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.config.getoption("--require-integration"):
        # A skipped end-to-end test is a test that did not run; in CI that must be red.
        report.outcome = "failed"
        report.longrepr = f"skipped under --require-integration: {report.longrepr}"


def binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"{' or '.join(names)} not installed (scripts/bootstrap.sh installs it)")


@pytest.fixture(scope="session")
def promtool() -> str:
    return binary("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return binary("amtool")


# --- PostgreSQL: the machine's server on 127.0.0.1:5432 (trust auth); each test gets its own database.

PG_ADMIN = os.environ.get(
    "WSINFRA_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    import psycopg

    name = f"wsinfra_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = PG_ADMIN.replace("dbname=postgres", f"dbname={name}")
    try:
        yield dsn
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def migrated_dsn(pg_dsn: str) -> str:
    import psycopg

    from schema import migrate

    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        await migrate.apply(conn)
    return pg_dsn
