"""The backup worker's output from a fixed snapshot: target `app` (pg_dump, a failed attempt
after its newest completed backup, a restore and a point-in-time drill, a PITR window) and a
Supabase project mirrored by the Supabase exporter; a job running, one record write failed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from backups.app import BackupExporter
from backups.config import BackupsConfig
from backups.figures import BackupFigures, DrillFigures, JobStats, Snapshot
from tests.golden import check_golden, render_golden

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
SUPABASE = "supabase:abcdefghijklmnopqrst"


def snapshot() -> Snapshot:
    return Snapshot(
        backups=(
            BackupFigures(
                "app",
                "pg_dump",
                last_completed=NOW - 3600,
                last_failed=NOW - 600,
                oldest_retained=NOW - 30 * 86400,
                counts=(("completed", 30), ("failed", 1), ("in_progress", 0), ("removed", 12)),
                success_ratio=30 / 31,
                last_size=73400320,
                previous_size=72351744,
                last_duration=41.5,
                last_expiry=NOW - 3600 + 30 * 86400,
            ),
            BackupFigures(
                SUPABASE,
                "supabase_physical",
                last_completed=NOW - 7 * 3600,
                last_failed=None,
                oldest_retained=NOW - 7 * 86400,
                counts=(("completed", 7), ("failed", 0), ("in_progress", 0), ("removed", 0)),
                success_ratio=1.0,
                last_expiry=NOW - 7 * 3600 + 7 * 86400,
            ),
        ),
        drills=(
            DrillFigures(
                "app", "point_in_time", True, NOW - 7200, NOW - 7200, 31.25, 0.5, 268435456
            ),
            DrillFigures("app", "restore", False, NOW - 900, NOW - 87300, 48.5, 3720.0, 268435456),
        ),
        source_sizes=(("app", 281018368.0),),
        pitr_windows=(("app", NOW - 2 * 86400, NOW - 30),),
    )


def test_backup_golden(tmp_path: Path) -> None:
    cfg = BackupsConfig.model_validate(
        {
            "record": {"conninfo": "host=127.0.0.1 dbname=wsinfra"},
            "location": str(tmp_path),
            "targets": [
                {
                    "name": "app",
                    "source": {"conninfo": "host=127.0.0.1 dbname=app"},
                    "pitr": {"archive_dir": str(tmp_path), "base_backup_dir": str(tmp_path)},
                }
            ],
        }
    )
    exporter = BackupExporter(cfg)
    jobs = JobStats(
        running={"drill": 1},
        finished={("backup", "ok"): 30, ("backup", "failed"): 1, ("drill", "ok"): 29},
        record_errors={"write": 1},
    )
    text = render_golden(exporter, (snapshot(), jobs))
    check_golden("backup", text)
