"""Every command and flag that `./wsinfra help`, the README and docs/ name is accepted by what
runs it: the stack runner, the billing report (which `report` passes its flags to), pytest and
the alert-latency benchmark. A documented flag that a parser refuses fails here, not for a user.
(The demo-stack end of `report --format json` / `--month` runs in tests/integration.)"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import alert_latency
from compose import stack
from exporters.billing import cli as billing_cli
from tests.conftest import ROOT

SCRIPT = ROOT / "wsinfra"
# A value for each placeholder the usage line and docs write in capitals.
SAMPLES = {
    "S": "1.5",
    "YYYY-MM": "2026-11",
    "N": "3",
    "PYTEST-ARGS": "-x",
    "PART,...": "vercel,billing",
}


def _usage() -> str:
    res = subprocess.run([str(SCRIPT), "help"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _alternatives(token: str) -> list[list[str]]:
    """A usage token as the argv pieces it stands for: `[--x V]` → absent or present,
    `a|b` → each, `V` (a placeholder) → its sample."""
    if token.startswith("[") and token.endswith("]"):
        inner = token[1:-1].split()
        options = [[]]
        for pieces in itertools.product(*(_alternatives(t) for t in inner)):
            options.append([p for piece in pieces for p in piece])
        return options
    return [[SAMPLES.get(alt, alt)] for alt in token.split("|")]


def _tokens(line: str) -> list[str]:
    """Words, keeping `[--flag VALUE]` together as one token."""
    return re.findall(r"\[[^\]]*\]|\S+", line)


def invocations(line: str) -> Iterator[list[str]]:
    """Every argv a documented line (`fault ok|slow [--delay S]`) stands for."""
    for pieces in itertools.product(*(_alternatives(t) for t in _tokens(line))):
        yield [p for piece in pieces for p in piece]


def documented() -> dict[str, set[tuple[str, ...]]]:
    """Where each documented invocation is written → the argvs it stands for."""
    out: dict[str, set[tuple[str, ...]]] = {}
    for line in _usage().splitlines()[1:]:
        words = line.strip()
        if words and not line.startswith("    "):  # a command, not a continued description
            usage = re.split(r"\s{2,}", words)[0]
            out.setdefault("./wsinfra help", set()).update(map(tuple, invocations(usage)))
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        # Words end at a table's cell border `|`; an escaped `\|` inside a cell is an alternative.
        text = page.read_text()
        for m in re.finditer(r"\./wsinfra((?: +(?:\[[^\]]*\]|(?:\\\||[^\s`#|\[])+))*)", text):
            line = m[1].replace("\\|", "|")
            where = f"{page.relative_to(ROOT)}: ./wsinfra{line}"
            out.setdefault(where, set()).update(map(tuple, invocations(line)))
    return out


def refused(argv: list[str]) -> str | None:
    """Why the program that `./wsinfra` hands this argv to would refuse it (None: accepted)."""
    cmd, args = (argv[0], argv[1:]) if argv else ("help", [])
    try:
        if cmd in {"up", "init", "check", "down", "status", "fault", "report"}:
            _, extra = stack.parse([cmd, *args])
            if cmd == "report":
                billing_cli.report_parser().parse_args(["--config.file", "x.yaml", *extra])
        elif cmd == "bench":
            alert_latency.parser().parse_args(args)
        elif cmd == "test":
            if args:
                res = subprocess.run(
                    [sys.executable, "-m", "pytest", "--collect-only", "-q", *args, __file__],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                return None if res.returncode in (0, 5) else res.stdout + res.stderr
        elif cmd != "help":
            return f"unknown command {cmd!r}"
    except SystemExit as exc:  # --help exits 0: accepted
        return None if exc.code == 0 else f"refused (exit {exc.code})"
    return None


def test_the_usage_names_every_command_the_script_runs() -> None:
    text = SCRIPT.read_text()
    patterns = re.findall(r"^\s+([a-z|_-]+)\)", text, re.M)
    commands = {c for p in patterns for c in p.split("|") if not c.startswith("-")}
    usage_commands = {argv[0] for argvs in [documented()["./wsinfra help"]] for argv in argvs}
    assert commands == usage_commands


def test_every_documented_command_and_flag_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    found = documented()
    assert len(found) > 10
    assert ("report", "--format", "json") in found["./wsinfra help"]
    assert ("report", "--month", "2026-11", "--format", "json") in found["./wsinfra help"]
    problems = [
        f"{where}: {' '.join(argv)}: {why}"
        for where, argvs in sorted(found.items())
        for argv in sorted(argvs)
        if (why := refused(list(argv)))
    ]
    capsys.readouterr()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["report", "--format", "yaml"], "refused"),
        (["report", "--month", "November"], "refused"),
        (["status", "--format", "json"], "refused"),
        (["fault", "sideways"], "refused"),
        (["deploy"], "unknown command"),
        (["bench", "--rounds", "3"], "refused"),
    ],
)
def test_the_check_itself_catches_refused_flags(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert expected in (refused(argv) or "")
    capsys.readouterr()


def test_unknown_command_exits_2_with_the_usage(tmp_path: Path) -> None:
    res = subprocess.run([str(SCRIPT), "deploy"], capture_output=True, text=True, check=False)
    assert res.returncode == 2
    assert "unknown command 'deploy'" in res.stderr
    assert "usage: ./wsinfra COMMAND" in res.stderr


def test_report_passes_its_flags_through_to_the_billing_report() -> None:
    args, extra = stack.parse(["report", "--month", "2026-10", "--format", "json"])
    assert (args.cmd, extra) == ("report", ["--month", "2026-10", "--format", "json"])


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["report", "--format"], "argument --format: expected one argument"),
        (["report", "--format", "yaml"], "invalid choice: 'yaml'"),
        (["report", "--month", "2026-13"], "'2026-13' is not YYYY-MM"),
        (["report", "--month"], "argument --month: expected one argument"),
        (["report", "--bogus"], "unrecognized arguments: --bogus"),
        (["status", "--x"], "unrecognized arguments: --x"),
        (["fault"], "the following arguments are required: mode"),
        ([], "the following arguments are required: cmd"),
    ],
)
def test_a_wrong_flag_exits_2_before_any_config_is_looked_for(
    argv: list[str],
    error: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Without a stack `report --format yaml` said "no billing config" (exit 1), not the flag.
    monkeypatch.setenv("WSINFRA_CONFIG_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("WSINFRA_RUN_DIR", str(tmp_path / "run"))
    with pytest.raises(SystemExit) as exc:
        stack.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert error in err
    assert "Traceback" not in err


def test_report_without_a_billing_config_says_where_one_comes_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    local, run = tmp_path / "local", tmp_path / "run"
    monkeypatch.setenv("WSINFRA_CONFIG_DIR", str(local))
    monkeypatch.setenv("WSINFRA_RUN_DIR", str(run))
    assert stack.main(["report", "--format", "json"]) == 1
    assert "the DEMO writes its own when it starts (./wsinfra up)" in capsys.readouterr().err
    # Real mode reads the user's own config, never a DEMO one a past `up` left in .run/.
    local.mkdir()
    (local / "uptime.yaml").write_text("targets: []\n")
    (run / "config").mkdir(parents=True)  # Stack.generated
    (run / "config" / "billing.yaml").write_text("# DEMO\n")
    assert stack.main(["report"]) == 1
    assert f"no {local / 'billing.yaml'}: ./wsinfra init --with billing" in capsys.readouterr().err
