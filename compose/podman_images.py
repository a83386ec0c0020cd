"""Images for running compose/compose.yaml where no container registry is reachable (CI here):
`python -m compose.podman_images build [--context DIR]`.

A Debian base made with debootstrap from the mirror apt already uses, then Prometheus,
Alertmanager, PostgreSQL and Python from Debian's packages (compose/podman/*.Containerfile),
and the project's own image from compose/Dockerfile on that Python, installed from wheels
built here (pip inside a container reaches no package index). Podman's layer cache makes a
second build of unchanged files take seconds; the base is made once per machine.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compose.processes import ROOT

HERE = Path(__file__).resolve().parent / "podman"
BASE = "localhost/debian:bookworm"
PYTHON_BASE = "localhost/wsinfra-python-base:debian"
PROJECT = "localhost/wsinfra-python:debian"
# Debian's packages as images: name → Containerfile in compose/podman/.
SERVICES = {
    PYTHON_BASE: "python-base.Containerfile",
    "localhost/wsinfra-prometheus:debian": "prometheus.Containerfile",
    "localhost/wsinfra-alertmanager:debian": "alertmanager.Containerfile",
    "localhost/wsinfra-postgres:debian": "postgres.Containerfile",
}
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class BuildError(Exception):
    pass


def _run(argv: list[str], what: str) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise BuildError(f"{what} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res.stdout


def mirror() -> str:
    """The Debian mirror apt uses here (deb822 or one-line sources), else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or "disabled" in path.name:
            continue
        text = path.read_text(errors="replace")
        found = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+/debian)\s+bookworm\b", text, re.M
        )
        if found:
            return found[1]
    return DEFAULT_MIRROR


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], check=False).returncode == 0


def ensure_base() -> None:
    """localhost/debian:bookworm from debootstrap (about 30 s, once per machine)."""
    if image_exists(BASE):
        return
    with tempfile.TemporaryDirectory(prefix="wsinfra-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror()], "debootstrap")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        res = subprocess.run(
            ["podman", "import", "-", BASE], stdin=tar.stdout, capture_output=True, check=False
        )
        tar.wait()
        if res.returncode != 0 or tar.returncode != 0:
            raise BuildError(f"podman import failed: {res.stderr.decode(errors='replace')[-2000:]}")


def build(context: Path) -> dict[str, float]:
    """Every image the podman override names; seconds each took."""
    took: dict[str, float] = {}
    started = time.monotonic()
    ensure_base()
    took[BASE] = time.monotonic() - started
    for name, containerfile in SERVICES.items():
        started = time.monotonic()
        _run(
            ["podman", "build", "-q", "-t", name, "-f", str(HERE / containerfile), str(HERE)], name
        )
        took[name] = time.monotonic() - started
    started = time.monotonic()
    wheels = context / "compose" / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--disable-pip-version-check",
            "-w",
            str(wheels),
            str(context),
        ],
        "pip wheel",
    )
    _run(
        [
            "podman",
            "build",
            "-q",
            "-t",
            PROJECT,
            "-f",
            str(context / "compose" / "Dockerfile"),
            "--build-arg",
            f"BASE={PYTHON_BASE}",
            "--build-arg",
            "INSTALL=--no-index --find-links /app/compose/wheels wsinfra",
            str(context),
        ],
        PROJECT,
    )
    took[PROJECT] = time.monotonic() - started
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compose.podman_images")
    ap.add_argument("command", choices=["build"])
    ap.add_argument("--context", type=Path, default=ROOT, help="the repository to build from")
    args = ap.parse_args(argv)
    try:
        took = build(args.context.resolve())
    except (BuildError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, seconds in took.items():
        print(f"{name}: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
