"""Point-in-time recovery on a private cluster whose WAL is archived: the drill restores to the
time between two marker rows, and the boundary holds."""

from __future__ import annotations

import os
import pwd
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from backups import pitr
from backups.config import BackupsConfig
from backups.figures import pitr_windows
from backups.scratch import PrivateCluster
from backups.worker import Worker

pytestmark = pytest.mark.integration


@pytest.fixture
async def archived(shared_tmp: Path) -> AsyncIterator[tuple[PrivateCluster, Path]]:
    archive = shared_tmp / "archive"
    archive.mkdir()
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(archive, pw.pw_uid, pw.pw_gid)
    cluster = PrivateCluster(PrivateCluster.create_base(shared_tmp, "source-"))
    await cluster.init()
    await cluster.start(
        {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": f"'cp %p {archive}/%f'",
            "fsync": "off",
        }
    )
    try:
        yield cluster, archive
    finally:
        await cluster.remove()


async def test_pitr_drill_stops_at_the_target_time(
    migrated_dsn: str, archived: tuple[PrivateCluster, Path], shared_tmp: Path
) -> None:
    cluster, archive = archived
    source = cluster.connection("postgres").conninfo
    cfg = BackupsConfig.model_validate(
        {
            "record": {"conninfo": migrated_dsn},
            "location": str(shared_tmp / "dumps"),
            "targets": [
                {
                    "name": "selfhosted",
                    "source": {"conninfo": source},
                    "pitr": {
                        "archive_dir": str(archive),
                        "base_backup_dir": str(shared_tmp / "base"),
                    },
                }
            ],
        }
    )
    target = cfg.targets[0]
    worker = Worker(cfg)
    assert await worker.base_backup(target)
    assert len(pitr.base_backups(target.pitr)) == 1  # type: ignore[arg-type]
    # Work after the base backup, so recovery replays archived WAL, not just the backup.
    async with await psycopg.AsyncConnection.connect(source, autocommit=True) as conn:
        await conn.execute("CREATE TABLE after_base AS SELECT generate_series(1, 10000) AS i")

    job = await worker.drill_now(target, "point_in_time")
    outcome = await worker.drill(job)
    assert outcome.passed, outcome
    checks = {c["check"]: c["ok"] for c in outcome.checks}
    assert checks == {
        "marker_before_target": True,
        "marker_after_target_absent": True,
        "base_backup": True,
    }
    async with await psycopg.AsyncConnection.connect(migrated_dsn, row_factory=dict_row) as conn:
        cur = await conn.execute("SELECT * FROM restore_drills WHERE id = %s", (job.id,))
        row = await cur.fetchone()
        assert row is not None
        assert row["status"] == "passed"
        assert row["drill_type"] == "point_in_time"
        assert row["rto_seconds"] > 0
        cur = await conn.execute(
            "SELECT backup_method, backup_status FROM backup_status WHERE backup_target = 'selfhosted'"
        )
        assert await cur.fetchall() == [
            {"backup_method": "pg_basebackup", "backup_status": "completed"}
        ]
    # Both markers are in the source: the restored copy lacked the second one only because it
    # stopped at the target.
    async with await psycopg.AsyncConnection.connect(source) as conn:
        cur = await conn.execute("SELECT label FROM wsinfra_pitr_markers ORDER BY written_at")
        assert [r[0] for r in await cur.fetchall()] == ["before", "after"]

    [(name, earliest, latest)] = pitr_windows(cfg)
    assert name == "selfhosted"
    assert earliest < latest


async def test_pitr_drill_without_a_base_backup_fails_with_the_reason(
    migrated_dsn: str, archived: tuple[PrivateCluster, Path], shared_tmp: Path
) -> None:
    cluster, archive = archived
    cfg = BackupsConfig.model_validate(
        {
            "record": {"conninfo": migrated_dsn},
            "location": str(shared_tmp / "dumps"),
            "targets": [
                {
                    "name": "selfhosted",
                    "source": {"conninfo": cluster.connection("postgres").conninfo},
                    "pitr": {
                        "archive_dir": str(archive),
                        "base_backup_dir": str(shared_tmp / "none"),
                    },
                }
            ],
        }
    )
    worker = Worker(cfg)
    outcome = await worker.drill(await worker.drill_now(cfg.targets[0], "point_in_time"))
    assert not outcome.passed
    assert outcome.error == "no base backup held yet"
