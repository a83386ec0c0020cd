"""The local stack without Docker: `python -m compose.stack up|down|status|fault MODE`.

With no configuration (no config/local/uptime.yaml) it runs the DEMO: a stand-in platform is
probed from two simulated regions and notifications go to a local Slack/PagerDuty sink. With
config/local/uptime.yaml and config/local/secrets/{slack_webhook_url,pagerduty_routing_key}
it monitors the real platform with the same Prometheus, rules and Alertmanager routing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from compose import local_config, services
from compose.processes import (
    StackError,
    free_port,
    pid_alive,
    spawn,
    stop_pid,
    wait_ready,
)
from compose.service import Stack
from compose.service_configs import provide_secrets


@dataclass(frozen=True, slots=True)
class Proc:
    name: str
    argv: list[str]
    ready: str
    show: str  # what to print as its address


def current() -> Stack:
    """The stack this process's environment describes, with the services of the table."""
    return Stack.from_env(services.SERVICES)


def isolated_env(base: Path) -> tuple[dict[str, str], dict[str, int]]:
    """Environment for a private DEMO stack under `base` on free ports (tests, benchmarks):
    a free port for every port of every service, keyed as Port.key (PROMETHEUS, SINK, ...)."""
    (base / "no-config").mkdir(parents=True, exist_ok=True)
    every = services.every_port()
    ports = {p.key: free_port() for p in every}
    env = {
        **os.environ,
        "WSINFRA_RUN_DIR": str(base / "run"),
        "WSINFRA_CONFIG_DIR": str(base / "no-config"),  # empty: DEMO mode
        # Its own database on the machine's PostgreSQL; the caller drops it when done.
        "WSINFRA_RECORDER_DB": f"wsinfra_isolated_{ports['RECORDER']}_{os.getpid()}",
        **{p.env: str(ports[p.key]) for p in every},
    }
    return env, ports


def prepare(stack: Stack) -> list[Proc]:
    """Write every runtime config into .run/, validate them, and list the processes to start:
    the table's services that run in this mode, each with what its config writer returns."""
    stack.generated.mkdir(parents=True, exist_ok=True)
    if not stack.demo:
        problems = local_config.stack_secret_problems(stack)
        if problems:
            raise StackError(
                "\n  ".join(["real mode cannot start:", *problems])
                + "\n(./wsinfra check lists every problem)"
            )
    provide_secrets(stack)
    procs = []
    for service in stack.services:
        argv = [*service.program.argv(), *service.config(stack, service)]
        procs.append(Proc(service.name, argv, stack.ready_url(service), stack.shown(service)))
    return procs


def report(stack: Stack, extra: list[str]) -> int:
    """The monthly cost report for this stack's billing config, active users from its Prometheus."""
    import subprocess

    billing = services.by_name("billing")
    if "-h" in extra or "--help" in extra:  # the billing report's own help; needs no stack
        return subprocess.run([*billing.program.argv(), "report", "--help"], check=False).returncode
    # The real platform's billing config is the user's own (the report needs no running
    # stack); the DEMO's is written by `up`. Never a DEMO config left in .run/ in real mode.
    path = stack.generated / "billing.yaml" if stack.demo else stack.config_dir / "billing.yaml"
    if not path.exists():
        raise StackError(
            "no billing config: the DEMO writes its own when it starts (./wsinfra up)"
            if stack.demo
            else f"no {path}: ./wsinfra init --with billing writes one"
        )
    argv = [*billing.program.argv(), "report", "--config.file", str(path)]
    if "--active-users" not in extra and "--prometheus" not in extra:
        argv += ["--prometheus", stack.url("PROMETHEUS")]
    return subprocess.run([*argv, *extra], check=False).returncode


def _pidfile(stack: Stack, name: str) -> Path:
    return stack.run / "pids" / f"{name}.pid"


def running(stack: Stack) -> dict[str, int]:
    out = {}
    pids = stack.run / "pids"
    for pf in sorted(pids.glob("*.pid")) if pids.exists() else []:
        pid = int(pf.read_text())
        if pid_alive(pid):
            out[pf.stem] = pid
        else:
            pf.unlink()
    return out


def up(stack: Stack) -> int:
    if running(stack):
        print("the stack is already running:", file=sys.stderr)
        return status(stack)
    procs = prepare(stack)
    (stack.run / "pids").mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    for p in procs:
        log = stack.run / "logs" / f"{p.name}.log"
        proc = spawn(p.argv, log)
        _pidfile(stack, p.name).write_text(str(proc.pid))
        started.append(p.name)
        try:
            wait_ready(p.ready, timeout=60, proc=proc)
        except StackError as exc:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            print(f"{p.name} failed to start: {exc}\n--- {log} ---\n{tail}", file=sys.stderr)
            down(stack)
            return 1
    (stack.run / "shown.json").write_text(json.dumps({p.name: p.show for p in procs}))
    print(
        "wsinfra local stack is up"
        + (" in DEMO mode (no config/local/uptime.yaml)" if stack.demo else "")
    )
    _print_addresses(stack)
    if stack.demo:
        print(
            "\nDEMO: break the platform and watch the sink:\n"
            "  ./wsinfra fault down    # port closed: UptimeTargetDown pages within ~20 s\n"
            "  ./wsinfra fault error   # HTTP 503 on every page: same alert, reason 'status'; the demo\n"
            "                          # Vercel drains then carry 30 % 5xx: VercelErrorRateHigh pages in ~3 min\n"
            "  ./wsinfra fault slow    # 3.5 s responses: UptimeResponseTimeHigh after ~5 min (spec: 5-minute average)\n"
            "  ./wsinfra fault ok      # recover: the RESOLVED message follows within ~30 s"
        )
    print(f"\nRunbooks (every alert links here): {stack.url('RECORDER', '/runbooks/')}")
    print("\n" + grafana_hint())
    print(f"\nLogs: {stack.run / 'logs'}/   Stop: ./wsinfra down")
    return 0


def grafana_hint() -> str:
    """Where the dashboards are: the local stack runs no Grafana (Debian does not package it)."""
    import shutil

    found = shutil.which("grafana-server") or shutil.which("grafana")
    where = (
        f"Grafana is installed ({found}) but not started by this stack: provision it with "
        "compose/grafana/provisioning/ (datasources) and dashboards/generated/ (dashboards)."
        if found
        else "Grafana: not installed here, so the dashboards (dashboards/generated/*.json) are not served."
    )
    return (
        where
        + "\nTo see them with Docker:  docker compose -f compose/compose.yaml -f compose/compose.demo.yaml"
        " --profile demo up -d --build  → http://127.0.0.1:13000/ (user admin, password in"
        " compose/secrets/grafana_admin_password)"
    )


def _print_addresses(stack: Stack) -> None:
    path = stack.run / "shown.json"
    shown = json.loads(path.read_text()) if path.exists() else {}
    alive = running(stack)
    for name, addr in shown.items():
        state = "up  " if name in alive else "DOWN"
        print(f"  [{state}] {name:15} {addr}")


def init(stack: Stack, with_parts: str) -> int:
    extra = [p.strip() for p in with_parts.split(",") if p.strip()]
    try:
        lines = local_config.init(stack, [*local_config.DEFAULT_PARTS, *extra])
    except ValueError as exc:
        print(f"./wsinfra init: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # WSINFRA_CONFIG_DIR is a file, read-only, not ours, ...
        print(f"./wsinfra init: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def check(stack: Stack) -> int:
    """Exit 0 when config/local/ is ready for `up`; otherwise 2 and one line per problem."""
    try:
        problems, checked = local_config.check(stack)
    except OSError as exc:  # the config folder itself cannot be read: that is the one problem
        problems, checked = [f"{exc.filename}: cannot read: {exc.strerror}"], []
    for line in problems:
        print(line)
    if problems:
        print(
            f"\n{len(problems)} problem(s); fix them, then ./wsinfra check again", file=sys.stderr
        )
        return 2
    print(f"ready: {', '.join(checked)} checked; start it with ./wsinfra up")
    return 0


def status(stack: Stack) -> int:
    if not running(stack):
        print("the stack is not running (start it with ./wsinfra up)")
        return 3
    print("wsinfra local stack" + (" (DEMO)" if stack.demo else ""))
    _print_addresses(stack)
    return 0


def down(stack: Stack) -> int:
    procs = running(stack)
    # Prometheus first, so it does not alert on exporters we stop; then Alertmanager and the
    # rest. What the pid files name: also a service that is no longer in the table.
    first = [services.PROMETHEUS, services.ALERTMANAGER]
    for name in [*first, *sorted(set(procs) - set(first))]:
        if name in procs:
            stop_pid(procs[name])
            _pidfile(stack, name).unlink(missing_ok=True)
            print(f"stopped {name}")
    if not procs:
        print("nothing was running")
    return 0


def fault(stack: Stack, mode: str, delay: float) -> int:
    if not stack.demo:
        print(
            "fault injection drives the DEMO platform only; real targets are not touched",
            file=sys.stderr,
        )
        return 2
    from fakes.platform import set_mode

    try:
        state = set_mode(stack.listen("PLATFORM_CONTROL"), mode, delay)
    except OSError as exc:
        print(f"cannot reach the demo platform ({exc}); is the stack up?", file=sys.stderr)
        return 1
    print(
        f"demo platform is now {state['mode']}"
        + (f" ({state['delay']}s per response)" if state["mode"] == "slow" else "")
    )
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m compose.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start the stack (DEMO without config/local/)")
    i = sub.add_parser("init", help="write config/local/ for the real platform")
    i.add_argument(
        "--with",
        dest="parts",
        default="",
        metavar="PART,...",
        help=f"parts beside {' and '.join(local_config.DEFAULT_PARTS)}: "
        + ", ".join(p for p in local_config.PARTS if p not in local_config.DEFAULT_PARTS),
    )
    sub.add_parser("check", help="validate config/local/ without starting anything")
    sub.add_parser("down", help="stop it")
    sub.add_parser("status", help="what runs, and where")
    f = sub.add_parser("fault", help="switch the DEMO platform: ok, slow, error, down")
    f.add_argument("mode", choices=["ok", "slow", "error", "down"])
    f.add_argument("--delay", type=float, default=3.5, help="seconds per response in slow mode")
    # Every flag of `report` is the billing report's (--month, --format, --active-users, ...,
    # and --help): they are passed through untouched, and refused there if wrong.
    sub.add_parser(
        "report",
        add_help=False,
        help="print the monthly cost report (flags: the billing exporter's report)",
    )
    return ap


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The command and, for `report`, the flags it passes through; anything else unknown is
    refused (exit 2) as argparse refuses it."""
    ap = parser()
    args, extra = ap.parse_known_args(argv)
    if extra and args.cmd != "report":
        ap.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.cmd == "report" and not {"-h", "--help"} & set(extra):
        # Refuse a wrong flag (--format yaml, --month 2026-13) now, with exit 2, rather than
        # after looking for a billing config, which a user without a stack has not got.
        from exporters.billing.cli import report_parser

        rp = report_parser()
        rp.prog = "./wsinfra report"
        rp.parse_args(["--config.file", "billing.yaml", *extra])
    return args, extra


def main(argv: list[str] | None = None) -> int:
    args, extra = parse(argv)
    stack = current()
    try:
        if args.cmd == "init":
            return init(stack, args.parts)
        if args.cmd == "check":
            return check(stack)
        if args.cmd == "up":
            return up(stack)
        if args.cmd == "down":
            return down(stack)
        if args.cmd == "status":
            return status(stack)
        if args.cmd == "report":
            return report(stack, extra)
        return fault(stack, args.mode, args.delay)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
