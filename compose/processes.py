"""Start, wait for and stop the stack's processes; shared by the local stack, tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class StackError(Exception):
    pass


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never one this process handed out before.

    The kernel may offer the same ephemeral port to two successive bind(0) calls once the
    first socket is closed, so a stack that asks for a dozen ports could get one twice
    (CI once saw the sink and Alertmanager given the same port)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise StackError("no free loopback port found in 100 tries")


def find_binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise StackError(
        f"none of {', '.join(names)} is installed; run scripts/bootstrap.sh "
        "(apt-get install prometheus prometheus-alertmanager)"
    )


def prometheus_binary() -> str:
    return find_binary("prometheus")


def promtool_binary() -> str:
    return find_binary("promtool")


# Debian names the binary prometheus-alertmanager; upstream tarballs and images alertmanager.
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")


def alertmanager_binary() -> str:
    return find_binary(*ALERTMANAGER_BINARIES)


def amtool_binary() -> str:
    return find_binary("amtool")


def prometheus_argv(config: Path, port: int, data_dir: Path) -> list[str]:
    return [prometheus_binary(), *prometheus_flags(config, port, data_dir)]


def prometheus_flags(config: Path, port: int, data_dir: Path) -> list[str]:
    return [
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url=http://127.0.0.1:{port}/",
        f"--storage.tsdb.path={data_dir}",
        # 30-day SLO windows need 30 days of data; Prometheus's default keeps 15.
        "--storage.tsdb.retention.time=45d",
        "--web.enable-lifecycle",
    ]


def alertmanager_argv(config: Path, port: int, data_dir: Path) -> list[str]:
    return [alertmanager_binary(), *alertmanager_flags(config, port, data_dir)]


def alertmanager_flags(config: Path, port: int, data_dir: Path) -> list[str]:
    return [
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url=http://127.0.0.1:{port}/",
        f"--storage.path={data_dir}",
        # One instance: no gossip port to collide with anything.
        "--cluster.listen-address=",
    ]


def python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a process in its own session (it outlives the caller), logging to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


def wait_ready(
    url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"process exited with code {proc.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise StackError(f"{url} not ready after {timeout:.0f}s ({last})")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by whoever adopted it) answers kill(0) but is gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = 0 if pid_alive(pid) else pid
            if done == pid or not pid_alive(pid):
                return
            time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        stop_pid(proc.pid, timeout)
    proc.wait(5)


def check_output(argv: list[str]) -> str:
    res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise StackError(f"{' '.join(argv)} failed:\n{res.stdout}{res.stderr}")
    return res.stdout
