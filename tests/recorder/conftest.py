"""The recorder tests' secrets."""

from __future__ import annotations

import pytest

from recorder.config import Secrets
from tests.recorder.samples import GITHUB_SECRET, TOKEN, VERCEL_SECRET


@pytest.fixture
def secrets() -> Secrets:
    # Reading them from files is tested through the command line (tests/recorder/test_cli.py).
    return Secrets(TOKEN.encode(), VERCEL_SECRET, GITHUB_SECRET)
