"""PostgreSQL's own tools (pg_dump, pg_restore, initdb, pg_ctl, pg_basebackup, psql) run as
subprocesses: found on this machine, given a connection without a secret on the command line
(the password goes through a private passfile), bounded in time, and their errors kept short.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from common.config import read_secret_file
from common.postgres import PgConnection


class ToolError(Exception):
    """A tool failed (or is missing, or ran out of time); the message is safe to record."""


def binary(name: str) -> str:
    """The newest installed PostgreSQL's `name` (Debian keeps them out of PATH), else PATH's."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version)
    if found:
        return found[-1]
    which = shutil.which(name)
    if which is None:
        raise ToolError(f"{name} is not installed (apt-get install postgresql-client)")
    return which


def _version(path: str) -> tuple[int, ...]:
    part = Path(path).parts[-3]
    return tuple(int(x) for x in part.split(".") if x.isdigit())


@contextlib.asynccontextmanager
async def libpq_env(conn: PgConnection | None) -> AsyncIterator[dict[str, str]]:
    """The environment for a tool connecting with `conn`: its password (if any) in a passfile
    readable by this user only, removed afterwards; never PGPASSWORD, never argv."""
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    if conn is None or conn.password_file is None:
        yield env
        return
    secret = read_secret_file(conn.password_file)
    fd, name = tempfile.mkstemp(prefix="wsinfra-pgpass-")
    try:
        with os.fdopen(fd, "w") as f:
            escaped = secret.replace("\\", "\\\\").replace(":", "\\:")
            f.write(f"*:*:*:*:{escaped}\n")
        env.pop("PGPASSWORD", None)
        env["PGPASSFILE"] = name
        yield env
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def pg_reason(exc: Exception) -> str:
    """What a psycopg error says, short and safe to record: the server's primary message, or
    the client's first line (a connection failure names host and port, never a password: the
    conninfo holds none)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = str(exc).strip()
    return str(primary or (text.splitlines()[0] if text else type(exc).__name__))[:300]


def _short(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # The last lines say what went wrong; a dump's progress chatter does not.
    return " | ".join(lines[-4:])[:1000]


async def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float,
    ok_codes: Sequence[int] = (0,),
) -> str:
    """Run a tool to completion; its stdout. A non-zero exit or the timeout → ToolError (the
    process group is killed on timeout or cancellation).

    Output goes to temporary files, not pipes: `pg_ctl start` leaves a server running that may
    inherit the child's descriptors (uvloop hands children socket pairs it does not close), and
    a pipe held open by the server would make waiting for end-of-output wait for the server."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,
        )
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            _kill(proc)
            await proc.wait()
            raise ToolError(f"{Path(argv[0]).name} did not finish within {timeout:.0f} s") from None
        except BaseException:
            _kill(proc)
            await proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode not in ok_codes:
        raise ToolError(f"{Path(argv[0]).name} exited {proc.returncode}: {_short(stderr)}")
    return stdout.decode("utf-8", "replace")


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, 9)
