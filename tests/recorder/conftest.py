"""The recorder tests' secrets on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.config import Secrets, Webhooks
from tests.recorder.samples import GITHUB_SECRET, TOKEN, VERCEL_SECRET


@pytest.fixture
def secrets(tmp_path: Path) -> Secrets:
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "vercel").write_bytes(VERCEL_SECRET)
    (tmp_path / "github").write_bytes(GITHUB_SECRET)
    return Secrets(
        Webhooks(
            alertmanager_token_file=tmp_path / "token",
            vercel_secret_file=tmp_path / "vercel",
            github_secret_file=tmp_path / "github",
        )
    )
