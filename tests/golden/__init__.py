"""Golden metric output per exporter (node_exporter style): each exporter's collector rendered
from a fixed snapshot into `<exporter>.prom`, checked by promtool and compared byte for byte.

`WSINFRA_UPDATE_GOLDEN=1 pytest tests/golden` rewrites the files after an intended change; the
diff is then reviewed like code. The list of series the exporters produce (which the rule and
dashboard tests check every query against) is read from these files.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock

from common import exporter as shared

HERE = Path(__file__).resolve().parent
_DURATION = re.compile(r"^(\w+_scrape_duration_seconds) \S+$", re.M)


def render_golden(exporter: Any, snapshot: Any, loop_families: list[Any] | None = None) -> str:
    """The exposition of one scrape with what varies between runs pinned: the build and the
    scrape's own duration."""
    with mock.patch.object(shared, "build_info", return_value=("0.0.0", "golden")):
        text = shared.render(exporter, snapshot, loop_families or [], 0.0).decode()
    return _DURATION.sub(r"\1 0.0", text)


def check_golden(name: str, text: str) -> None:
    path = HERE / f"{name}.prom"
    if os.environ.get("WSINFRA_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    want = path.read_text(encoding="utf-8") if path.exists() else ""
    assert text == want, (
        f"{path.name} differs: rerun with WSINFRA_UPDATE_GOLDEN=1 and review the diff"
    )
    res = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def golden_sample_names(exporter: str = "*") -> set[str]:
    """Every sample name in the golden files (with _total, _bucket, _info … as exposed), of all
    exporters or of one."""
    names: set[str] = set()
    for path in HERE.glob(f"{exporter}.prom"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names
