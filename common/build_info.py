"""Version and revision for `<ns>_build_info`, read once at start-up."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@cache
def build_info() -> tuple[str, str]:
    try:
        ver = version("wsinfra")
    except PackageNotFoundError:
        ver = "0.0.0"
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=2,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = "unknown"
    return ver, rev or "unknown"
