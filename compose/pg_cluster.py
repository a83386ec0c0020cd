"""A throwaway PostgreSQL cluster (initdb/pg_ctl on a free port) for tests and benchmarks that
stop, restart or reconfigure the server: outages, and extensions that must be preloaded."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from compose.processes import free_port


class PgNotInstalled(RuntimeError):
    """initdb/pg_ctl are not on this machine."""


def installed() -> bool:
    try:
        _pg_bin("initdb")
    except PgNotInstalled:
        return False
    return True


def _pg_bin(name: str) -> str:
    which = shutil.which(name)
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([which] if which else [])
    if not found:
        raise PgNotInstalled(f"{name} not installed (apt-get install postgresql)")
    return str(found[-1])


class Cluster:
    """A private PostgreSQL cluster; as root it runs as the postgres user, as initdb requires."""

    def __init__(self, base: Path, settings: dict[str, str] | None = None) -> None:
        self.settings = settings or {}
        self.dir = base / "pgdata"
        self.sock = base / "sock"
        self.port = free_port()
        self.user: str | None = "postgres" if os.geteuid() == 0 else None
        self.sock.mkdir()
        if self.user:
            pw = pwd.getpwnam(self.user)
            for p in (base, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def _run(self, *argv: str) -> None:
        cmd = list(argv) if self.user is None else ["runuser", "-u", self.user, "--", *argv]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(
            _pg_bin("initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres", "--no-sync"
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        opts += "".join(f" -c {k}={v}" for k, v in self.settings.items())
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.dir),
            "-o",
            opts,
            "-l",
            str(self.dir.parent / "pg.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.dir), "-m", "fast", "-w", "stop")

    def dsn(self, db: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={db}"


@contextlib.contextmanager
def throwaway_cluster(settings: dict[str, str] | None = None) -> Iterator[Cluster]:
    # Not under pytest's tmp_path: that is private to root, and initdb runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="wsinfra-pg-"))
    c = Cluster(base, settings)
    c.init()
    c.start()
    try:
        yield c
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            c.stop()
        shutil.rmtree(base, ignore_errors=True)
