"""The DEMO local stack on free ports, for end-to-end tests: start, query, read, stop."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from compose.database import drop_database
from compose.service import Stack as StackConfig
from compose.services import SERVICES
from compose.stack import isolated_env
from tests.conftest import ROOT, binary

T = TypeVar("T")


def repository_copy(dst: Path) -> Path:
    """The working tree as a fresh clone would have it (no config/local/, no .run/, no compose
    secrets or wheels), with this checkout's installed venv, so that relative paths in the
    README and compose files are the copy's own and nothing is written into this checkout."""
    shutil.copytree(
        ROOT,
        dst,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".run", "__pycache__", ".*_cache", "*.egg-info", "wheels"
        ),
    )
    shutil.rmtree(dst / "config" / "local", ignore_errors=True)
    for secret in (dst / "compose" / "secrets").glob("*"):
        if secret.suffix != ".example":
            secret.unlink()
    (dst / ".venv").symlink_to(ROOT / ".venv")
    return dst


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read())


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    started = time.monotonic()
    deadline = started + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError as exc:
            last_exc = exc
            value = None
        if value:
            print(f"{what}: {time.monotonic() - started:.1f}s")
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} ({last_exc})")


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.run_dir = tmp / "run"
        self.env, self.ports = isolated_env(tmp)

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run([sys.executable, "-m", "compose.stack", *args])

    def wsinfra(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`./wsinfra ARGS` itself (the entry point a user types), against this stack."""
        return self._run([str(ROOT / "wsinfra"), *args])

    @property
    def config_dir(self) -> Path:
        return Path(self.env["WSINFRA_CONFIG_DIR"])

    @property
    def run_dir_path(self) -> Path:
        return Path(self.env["WSINFRA_RUN_DIR"])

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        doc = get_json(
            self.url("PROMETHEUS", "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        )
        assert doc["status"] == "success", doc
        return list(doc["data"]["result"])

    def messages(self) -> dict[str, list[dict[str, Any]]]:
        """What reached Slack and PagerDuty's Events API (the sink also lists more)."""
        doc = get_json(self.url("SINK", "/api/messages"))
        return {"slack": doc["slack"], "pagerduty": doc["pagerduty"]}

    def logs(self) -> str:
        out = []
        for log in sorted((self.run_dir / "logs").glob("*.log")):
            out.append(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
        return "\n".join(out)


def running_stack(
    tmp_path: Path, prepare: Callable[[Stack], None] | None = None
) -> Iterator[Stack]:
    """Start the DEMO stack; `prepare` may first write files into its config directory
    (`Stack.config_dir`), knowing the ports it will use."""
    binary("prometheus")
    binary("prometheus-alertmanager", "alertmanager")
    binary("amtool")
    binary("promtool")
    s = Stack(tmp_path)
    if prepare is not None:
        prepare(s)
    res = s.cli("up")
    assert res.returncode == 0, res.stdout + res.stderr + s.logs()
    assert "DEMO" in res.stdout
    assert "dashboards/generated" in res.stdout, "up says where the dashboards are"
    assert f"Runbooks (every alert links here): {s.url('RECORDER', '/runbooks/')}" in res.stdout
    # Every service the DEMO runs (a row of compose/services.py) is printed with its address.
    for service in StackConfig(SERVICES, s.env).services:
        shown = f"{service.name:15} http://127.0.0.1:{s.ports[service.port.key]}/"
        assert shown in res.stdout, f"up does not print where {service.name} listens"
    try:
        yield s
    finally:
        down = s.cli("down")
        drop_database(s.env["WSINFRA_RECORDER_DB"], None)
        assert down.returncode == 0, down.stderr
        assert s.cli("status").returncode == 3, "processes survived `down`"
