"""A Vercel exporter config pointed at the fake Vercel, with its secrets on disk, and a simulated
clock: shared by the Vercel tests and the benchmarks that drive the exporter against the fake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PROJECT_ID = "prj_12HKQaOmR5t5Uy6vdcQsNIiZgHGB"
TOKEN = "vercel-token-SECRET-4f1c"  # noqa: S105 - a fake token that must never show up anywhere
SECRETS = {
    "logs": "logs-drain-SECRET-1",
    "traces": "traces-drain-SECRET-2",
    "speed_insights": "si-drain-SECRET-3",
    "verify_code": "verify-code-abc",
}


class SimClock:
    """Time that only moves when slept through: API waits in tests cost nothing."""

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self.t = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(seconds, 0.0)


def write_config(
    tmp_path: Path,
    *,
    base_url: str = "http://127.0.0.1:9",
    token: bool = True,
    api: dict[str, Any] | None = None,
    drains: dict[str, Any] | None = None,
    sample_rates: dict[str, float] | None = None,
) -> Path:
    sec = tmp_path / "secrets"
    sec.mkdir(parents=True, exist_ok=True)
    (sec / "token").write_text(TOKEN + "\n")
    for name, value in SECRETS.items():
        (sec / name).write_text(value + "\n")
    rates = sample_rates or {}
    doc: dict[str, Any] = {
        "api": {
            "base_url": base_url,
            **({"token_file": str(sec / "token")} if token else {}),
            "team_id": "team_1a2b3c4d5e6f7g8h9i0j1k2l",
            **(api or {}),
        },
        "projects": [{"id": PROJECT_ID, "name": "web"}],
        "drains": {
            **{
                n: {"secret_file": str(sec / n), "sample_rate": rates.get(n, 1.0)}
                for n in ("logs", "traces", "speed_insights")
            },
            "verify_code_file": str(sec / "verify_code"),
            **(drains or {}),
        },
    }
    path = tmp_path / "vercel.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path
