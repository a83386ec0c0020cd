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
from typing import Any

import yaml

from alert_rules.config import load_rules
from alertmanager.runtime import Placement, write_placed
from compose import database, demo
from compose.processes import (
    ROOT,
    StackError,
    alertmanager_argv,
    amtool_binary,
    check_output,
    free_port,
    pid_alive,
    prometheus_argv,
    promtool_binary,
    python_argv,
    spawn,
    stop_pid,
    wait_ready,
)
from compose.prometheus_config import dump as dump_prometheus
from compose.prometheus_config import prometheus_config

RUN = Path(os.environ.get("WSINFRA_RUN_DIR", ROOT / ".run"))
CONFIG_DIR = Path(os.environ.get("WSINFRA_CONFIG_DIR", ROOT / "config" / "local"))
HOST = "127.0.0.1"


def _port(name: str, default: int) -> int:
    return int(os.environ.get(f"WSINFRA_{name}_PORT", default))


PORTS = {
    "prometheus": _port("PROMETHEUS", 19090),
    "alertmanager": _port("ALERTMANAGER", 19093),
    "uptime-us-east": _port("UPTIME_US_EAST", 19701),
    "uptime-eu-west": _port("UPTIME_EU_WEST", 19702),
    "uptime": _port("UPTIME", 19701),
    "platform": _port("PLATFORM", 19780),
    "platform-control": _port("PLATFORM_CONTROL", 19781),
    "platform-tls": _port("PLATFORM_TLS", 19782),
    "sink": _port("SINK", 19790),
    "recorder": _port("RECORDER", 19700),
    "vercel": _port("VERCEL", 19703),
    "supabase": _port("SUPABASE", 19704),
    "supabase-api": _port("SUPABASE_API", 19785),
    "vercel-api": _port("VERCEL_API", 19783),
    "billing": _port("BILLING", 19705),
    "billing-vercel-api": _port("BILLING_VERCEL_API", 19786),
    "billing-openai-api": _port("BILLING_OPENAI_API", 19787),
}
RECORDER_DB = os.environ.get("WSINFRA_RECORDER_DB", "wsinfra")


@dataclass(frozen=True, slots=True)
class Proc:
    name: str
    argv: list[str]
    ready: str
    show: str  # what to print as its address


def isolated_env(base: Path) -> tuple[dict[str, str], dict[str, int]]:
    """Environment for a private DEMO stack under `base` on free ports (tests, benchmarks)."""
    (base / "no-config").mkdir(parents=True, exist_ok=True)
    names = [
        "PROMETHEUS",
        "ALERTMANAGER",
        "UPTIME_US_EAST",
        "UPTIME_EU_WEST",
        "PLATFORM",
        "PLATFORM_CONTROL",
        "PLATFORM_TLS",
        "SINK",
        "RECORDER",
        "VERCEL",
        "VERCEL_API",
        "SUPABASE",
        "SUPABASE_API",
        "BILLING",
        "BILLING_VERCEL_API",
        "BILLING_OPENAI_API",
    ]
    ports = {n: free_port() for n in names}
    env = {
        **os.environ,
        "WSINFRA_RUN_DIR": str(base / "run"),
        "WSINFRA_CONFIG_DIR": str(base / "no-config"),  # empty: DEMO mode
        # Its own database on the machine's PostgreSQL; the caller drops it when done.
        "WSINFRA_RECORDER_DB": f"wsinfra_isolated_{ports['RECORDER']}_{os.getpid()}",
        **{f"WSINFRA_{n}_PORT": str(p) for n, p in ports.items()},
    }
    return env, ports


def secrets_token() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def _url(name: str, path: str = "/") -> str:
    return f"http://{HOST}:{PORTS[name]}{path}"


def is_demo() -> bool:
    return not (CONFIG_DIR / "uptime.yaml").exists()


def prepare() -> list[Proc]:
    """Write every runtime config into .run/, validate them, and list the processes to start."""
    cfg = RUN / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    if is_demo():
        secrets = RUN / "demo" / "secrets"
        demo.write_demo_secrets(secrets, _url("sink"))
        uptime_cfg = cfg / "uptime.yaml"
        targets = demo.demo_uptime_config(
            _url("platform"), https_url=f"https://{HOST}:{PORTS['platform-tls']}"
        )
        tls_cert, tls_key = demo.ensure_demo_certificate(RUN / "demo" / "tls")
        only = os.environ.get("WSINFRA_DEMO_TARGETS")
        if only:
            # Benchmarks probe exactly what their baseline probes.
            targets["targets"] = [t for t in targets["targets"] if t["name"] in only.split(",")]
        uptime_cfg.write_text(demo.dump(targets, "# DEMO targets\n"))
        regions = {"us-east": "uptime-us-east", "eu-west": "uptime-eu-west"}
        procs.append(
            Proc(
                "platform",
                python_argv(
                    "fakes.platform",
                    "serve",
                    "--listen",
                    f"{HOST}:{PORTS['platform']}",
                    "--control",
                    f"{HOST}:{PORTS['platform-control']}",
                    "--tls-listen",
                    f"{HOST}:{PORTS['platform-tls']}",
                    "--tls-cert",
                    str(tls_cert),
                    "--tls-key",
                    str(tls_key),
                ),
                _url("platform-control", "/mode"),
                _url("platform") + "  (DEMO stand-in platform)",
            )
        )
        procs.append(
            Proc(
                "sink",
                python_argv("fakes.sink", *demo.sink_args(f"{HOST}:{PORTS['sink']}", str(secrets))),
                _url("sink", "/-/healthy"),
                _url("sink") + "  (DEMO Slack/PagerDuty sink: messages show here)",
            )
        )
        pagerduty_url: str | None = _url("sink", "/v2/enqueue")
        procs.append(
            Proc(
                "supabase-api",
                python_argv(
                    "fakes.supabase_api",
                    "--listen",
                    f"{HOST}:{PORTS['supabase-api']}",
                    "--token-file",
                    str(secrets / "supabase_access_token"),
                    "--keys-dir",
                    str(secrets / "supabase_keys"),
                ),
                _url("supabase-api", "/-/healthy"),
                _url("supabase-api") + "  (DEMO Supabase Management API)",
            )
        )
        sb_management: dict[str, object] | None = demo.demo_supabase_management(
            _url("supabase-api"), str(secrets / "supabase_access_token")
        )
        demo.write_demo_supabase_keys(secrets / "supabase_keys")
        sb_project_metrics: dict[str, object] | None = demo.demo_project_metrics(
            _url("supabase-api"), str(secrets / "supabase_keys")
        )
        demo.write_demo_tokens(secrets, demo.VERCEL_SECRET_FILES.values())
        vercel_cfg: Path | None = cfg / "vercel.yaml"
        assert vercel_cfg is not None
        vercel_cfg.write_text(
            demo.dump(
                demo.demo_vercel_config(
                    _url("vercel-api"), str(secrets), str(RUN / "data" / "vercel" / "state.json")
                ),
                "# DEMO: the Vercel exporter against the fake Vercel API and drain feed\n",
            )
        )
        procs.append(
            Proc(
                "vercel-api",
                python_argv(
                    "fakes.vercel",
                    "--listen",
                    f"{HOST}:{PORTS['vercel-api']}",
                    "--secrets-dir",
                    str(secrets),
                    "--project-id",
                    demo.DEMO_VERCEL_PROJECT_ID,
                    "--team-id",
                    demo.DEMO_VERCEL_TEAM_ID,
                    "--exporter",
                    _url("vercel"),
                    "--platform-control",
                    f"{HOST}:{PORTS['platform-control']}",
                    "--recorder",
                    _url("recorder"),
                ),
                _url("vercel-api", "/-/healthy"),
                _url("vercel-api") + "  (DEMO Vercel API and drain feed)",
            )
        )
        demo.write_demo_tokens(secrets, demo.BILLING_SECRET_FILES.values())
        invoices = RUN / "demo" / "invoices"
        procs.append(
            Proc(
                "billing-api",
                python_argv(
                    "fakes.billing_api",
                    "--vercel-listen",
                    f"{HOST}:{PORTS['billing-vercel-api']}",
                    "--openai-listen",
                    f"{HOST}:{PORTS['billing-openai-api']}",
                    "--secrets-dir",
                    str(secrets),
                    "--team-id",
                    demo.DEMO_BILLING_TEAM_ID,
                    "--invoices-dir",
                    str(invoices),
                ),
                _url("billing-vercel-api", "/-/healthy"),
                _url("billing-vercel-api")
                + "  (DEMO billing APIs: Vercel FOCUS charges; OpenAI costs on "
                + _url("billing-openai-api")
                + ")",
            )
        )
        billing_doc: dict[str, Any] | None = demo.demo_billing_config(
            _url("billing-vercel-api"), _url("billing-openai-api"), str(secrets), str(invoices)
        )
    else:
        secrets = CONFIG_DIR / "secrets"
        missing = [
            n for n in ("slack_webhook_url", "pagerduty_routing_key") if not (secrets / n).is_file()
        ]
        if missing:
            raise StackError(
                f"real mode needs {', '.join(str(secrets / n) for n in missing)} (see config/example/)"
            )
        uptime_cfg = CONFIG_DIR / "uptime.yaml"
        region = os.environ.get("WSINFRA_REGION", "local")
        regions = {region: "uptime"}
        pagerduty_url = None
        sb_management = None
        sb_project_metrics = None
        # The Vercel exporter joins when its config is there (config/example/vercel.yaml).
        vercel_cfg = CONFIG_DIR / "vercel.yaml" if (CONFIG_DIR / "vercel.yaml").exists() else None
        # So does the billing exporter (config/example/billing.yaml).
        own_billing = CONFIG_DIR / "billing.yaml"
        billing_doc = yaml.safe_load(own_billing.read_text()) if own_billing.exists() else None
    for region, name in regions.items():
        procs.append(
            Proc(
                name,
                python_argv(
                    "exporters.uptime",
                    "--config.file",
                    str(uptime_cfg),
                    "--web.listen-address",
                    f"{HOST}:{PORTS[name]}",
                ),
                _url(name, "/-/ready"),
                _url(name, "/metrics") + f"  (uptime exporter, region {region})",
            )
        )
    check_output(
        python_argv("exporters.uptime", "--config.file", str(uptime_cfg), "--check-config")
    )
    if vercel_cfg is not None:
        check_output(
            python_argv("exporters.vercel", "--config.file", str(vercel_cfg), "--check-config")
        )
        procs.append(
            Proc(
                "vercel",
                python_argv(
                    "exporters.vercel",
                    "--config.file",
                    str(vercel_cfg),
                    "--web.listen-address",
                    f"{HOST}:{PORTS['vercel']}",
                ),
                _url("vercel", "/-/ready"),
                _url("vercel", "/metrics")
                + "  (Vercel exporter; drains: POST /drains/logs, /drains/traces, /drains/speed-insights)",
            )
        )

    token = secrets / "recorder_token"
    if not token.exists():
        # Internal to this stack (Alertmanager → recorder): made here, never typed by anyone.
        token.write_text(secrets_token() + "\n")
        token.chmod(0o600)
    pwfile = database.password_file()
    rec_cfg = cfg / "recorder.yaml"
    rec_db: dict[str, str] = {"conninfo": database.ensure_database(RECORDER_DB, pwfile)}
    if pwfile is not None:
        rec_db["password_file"] = str(pwfile)
    hooks = {"alertmanager_token_file": str(token)}
    # Provider webhooks are optional: enabled by dropping their secret next to the others.
    for key, name in (
        ("vercel_secret_file", "vercel_webhook_secret"),
        ("github_secret_file", "github_webhook_secret"),
    ):
        if (secrets / name).is_file():
            hooks[key] = str(secrets / name)
    journal = {"directory": str(RUN / "recorder-journal")}
    rec_cfg.write_text(
        yaml.safe_dump({"database": rec_db, "webhooks": hooks, "journal": journal}, sort_keys=False)
    )
    check_output(python_argv("recorder", "migrate", "--config.file", str(rec_cfg)))
    if is_demo():
        database.seed_demo_users(rec_db["conninfo"], pwfile)
    procs.append(
        Proc(
            "recorder",
            python_argv(
                "recorder",
                "serve",
                "--config.file",
                str(rec_cfg),
                "--web.listen-address",
                f"{HOST}:{PORTS['recorder']}",
            ),
            _url("recorder", "/-/ready"),
            _url("recorder", "/metrics") + f"  (recorder → PostgreSQL database {RECORDER_DB})",
        )
    )

    procs.append(
        supabase_exporter(cfg, rec_db["conninfo"], pwfile, sb_management, sb_project_metrics)
    )
    if billing_doc is not None:
        procs.append(billing_exporter(cfg, billing_doc, rec_db["conninfo"], pwfile))

    am_cfg = write_placed(
        cfg / "alertmanager.yml",
        Placement(
            secrets_dir=secrets,
            pagerduty_url=pagerduty_url,
            recorder_url=f"http://{HOST}:{PORTS['recorder']}",
        ),
    )
    check_output([amtool_binary(), "check-config", str(am_cfg)])
    prom_cfg = cfg / "prometheus.yml"
    prom_cfg.write_text(
        dump_prometheus(
            prometheus_config(
                rules=load_rules(),
                uptime_by_region={r: f"{HOST}:{PORTS[n]}" for r, n in regions.items()},
                alertmanager=f"{HOST}:{PORTS['alertmanager']}",
                rule_files=[str(ROOT / "alert_rules" / "generated" / "*.yml")],
                self_address=f"{HOST}:{PORTS['prometheus']}",
                recorder=f"{HOST}:{PORTS['recorder']}",
                vercel=f"{HOST}:{PORTS['vercel']}" if vercel_cfg is not None else None,
                supabase=f"{HOST}:{PORTS['supabase']}",
                billing=f"{HOST}:{PORTS['billing']}" if billing_doc is not None else None,
                supabase_projects_sd=_url("supabase", "/sd") if supabase_sd_enabled() else None,
            ),
            "# Generated by compose/stack.py. Do not edit.\n",
        )
    )
    check_output([promtool_binary(), "check", "config", str(prom_cfg)])
    procs.append(
        Proc(
            "alertmanager",
            alertmanager_argv(am_cfg, PORTS["alertmanager"], RUN / "data" / "alertmanager"),
            _url("alertmanager", "/-/ready"),
            _url("alertmanager"),
        )
    )
    procs.append(
        Proc(
            "prometheus",
            prometheus_argv(prom_cfg, PORTS["prometheus"], RUN / "data" / "prometheus"),
            _url("prometheus", "/-/ready"),
            _url("prometheus") + "  (alerts: /alerts)",
        )
    )
    return procs


def supabase_exporter(
    cfg: Path,
    conninfo: str,
    pwfile: Path | None,
    management: dict[str, object] | None,
    project_metrics: dict[str, object] | None,
) -> Proc:
    """The Supabase exporter: config/local/supabase.yaml when there is one, otherwise the SQL
    collectors on this stack's own PostgreSQL (the recorder's database): real data either way;
    in the DEMO also the Management API parts, from the fake."""
    own = CONFIG_DIR / "supabase.yaml"
    if own.exists():
        sb_cfg = own
        what = f"Supabase exporter ({own})"
    else:
        db: dict[str, object] = {"name": "local", "conninfo": conninfo}
        if pwfile is not None:
            db["password_file"] = str(pwfile)
        if not database.enable_pg_stat_statements(conninfo, pwfile):
            db["disabled_collectors"] = ["statements"]
            print(
                "note: this PostgreSQL does not preload pg_stat_statements, so slow statements are "
                "not collected (add shared_preload_libraries = 'pg_stat_statements' and restart it)"
            )
        sb_cfg = cfg / "supabase.yaml"
        doc: dict[str, object] = {"databases": [db]}
        if management is not None:
            doc["management"] = management
        if project_metrics is not None:
            doc["project_metrics"] = project_metrics
        sb_cfg.write_text(
            "# The stack's own PostgreSQL, monitored by the Supabase exporter's SQL collectors"
            + (" (backups and health: the DEMO Management API)" if management else "")
            + ".\n"
            + yaml.safe_dump(doc, sort_keys=False)
        )
        what = f"Supabase exporter: SQL collectors on this stack's PostgreSQL ({RECORDER_DB})" + (
            "; DEMO Management API" if management else ""
        )
    check_output(python_argv("exporters.supabase", "--config.file", str(sb_cfg), "--check-config"))
    return Proc(
        "supabase",
        python_argv(
            "exporters.supabase",
            "--config.file",
            str(sb_cfg),
            "--web.listen-address",
            f"{HOST}:{PORTS['supabase']}",
        ),
        _url("supabase", "/-/ready"),
        _url("supabase", "/metrics") + f"  ({what})",
    )


def billing_exporter(cfg: Path, doc: dict[str, Any], conninfo: str, pwfile: Path | None) -> Proc:
    """The billing exporter; unless its config says otherwise, its scheduled job writes the
    spec's cost_tracking table into this stack's recorder database."""
    if "cost_tracking" not in doc:
        ct: dict[str, Any] = {"conninfo": conninfo}
        if pwfile is not None:
            ct["password_file"] = str(pwfile)
        doc = {**doc, "cost_tracking": ct}
    path = cfg / "billing.yaml"
    path.write_text(
        ("# DEMO: billing APIs and invoices from the fakes\n" if is_demo() else "")
        + yaml.safe_dump(doc, sort_keys=False)
    )
    check_output(python_argv("exporters.billing", "--config.file", str(path), "--check-config"))
    return Proc(
        "billing",
        python_argv(
            "exporters.billing",
            "--config.file",
            str(path),
            "--web.listen-address",
            f"{HOST}:{PORTS['billing']}",
        ),
        _url("billing", "/-/ready"),
        _url("billing", "/metrics")
        + f"  (billing exporter → cost_tracking in {RECORDER_DB}; report: ./wsinfra report)",
    )


def report(extra: list[str]) -> int:
    """The monthly cost report for this stack's billing config, active users from its Prometheus."""
    path = RUN / "config" / "billing.yaml"
    if not path.exists():
        raise StackError(
            "no billing config: start the stack (./wsinfra up) or add config/local/billing.yaml"
        )
    import subprocess

    argv = python_argv("exporters.billing", "report", "--config.file", str(path))
    if "--active-users" not in extra and "--prometheus" not in extra:
        argv += ["--prometheus", _url("prometheus")]
    return subprocess.run([*argv, *extra], check=False).returncode


def supabase_sd_enabled() -> bool:
    """Supabase's own metrics are scraped where the exporter re-exposes them: the DEMO, or a
    config/local/supabase.yaml with a project_metrics section."""
    own = CONFIG_DIR / "supabase.yaml"
    if own.exists():
        return "project_metrics" in (yaml.safe_load(own.read_text()) or {})
    return is_demo()


def _pidfile(name: str) -> Path:
    return RUN / "pids" / f"{name}.pid"


def running() -> dict[str, int]:
    out = {}
    for pf in sorted((RUN / "pids").glob("*.pid")) if (RUN / "pids").exists() else []:
        pid = int(pf.read_text())
        if pid_alive(pid):
            out[pf.stem] = pid
        else:
            pf.unlink()
    return out


def up() -> int:
    if running():
        print("the stack is already running:", file=sys.stderr)
        return status()
    procs = prepare()
    (RUN / "pids").mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    for p in procs:
        log = RUN / "logs" / f"{p.name}.log"
        proc = spawn(p.argv, log)
        _pidfile(p.name).write_text(str(proc.pid))
        started.append(p.name)
        try:
            wait_ready(p.ready, timeout=60, proc=proc)
        except StackError as exc:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            print(f"{p.name} failed to start: {exc}\n--- {log} ---\n{tail}", file=sys.stderr)
            down()
            return 1
    (RUN / "shown.json").write_text(json.dumps({p.name: p.show for p in procs}))
    print(
        "wsinfra local stack is up"
        + (" in DEMO mode (no config/local/uptime.yaml)" if is_demo() else "")
    )
    _print_addresses()
    if is_demo():
        print(
            "\nDEMO: break the platform and watch the sink:\n"
            "  ./wsinfra fault down    # port closed: UptimeTargetDown pages within ~20 s\n"
            "  ./wsinfra fault error   # HTTP 503 on every page: same alert, reason 'status'; the demo\n"
            "                          # Vercel drains then carry 30 % 5xx: VercelErrorRateHigh pages in ~3 min\n"
            "  ./wsinfra fault slow    # 3.5 s responses: UptimeResponseTimeHigh after ~5 min (spec: 5-minute average)\n"
            "  ./wsinfra fault ok      # recover: the RESOLVED message follows within ~30 s"
        )
    print("\n" + grafana_hint())
    print(f"\nLogs: {RUN / 'logs'}/   Stop: ./wsinfra down")
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
        + "\nTo see them with Docker:  docker compose -f compose/compose.yaml --profile demo up -d"
        " --build  → http://127.0.0.1:13000/ (user admin, password in compose/secrets/grafana_admin_password)"
    )


def _print_addresses() -> None:
    shown = json.loads((RUN / "shown.json").read_text()) if (RUN / "shown.json").exists() else {}
    alive = running()
    for name, addr in shown.items():
        state = "up  " if name in alive else "DOWN"
        print(f"  [{state}] {name:15} {addr}")


def status() -> int:
    if not running():
        print("the stack is not running (start it with ./wsinfra up)")
        return 3
    print("wsinfra local stack" + (" (DEMO)" if is_demo() else ""))
    _print_addresses()
    return 0


def down() -> int:
    procs = running()
    # Reverse start order: Prometheus first, so it does not alert on exporters we stop.
    for name in [
        "prometheus",
        "alertmanager",
        *sorted(set(procs) - {"prometheus", "alertmanager"}),
    ]:
        if name in procs:
            stop_pid(procs[name])
            _pidfile(name).unlink(missing_ok=True)
            print(f"stopped {name}")
    if not procs:
        print("nothing was running")
    return 0


def fault(mode: str, delay: float) -> int:
    if not is_demo():
        print(
            "fault injection drives the DEMO platform only; real targets are not touched",
            file=sys.stderr,
        )
        return 2
    from fakes.platform import set_mode

    try:
        state = set_mode(f"{HOST}:{PORTS['platform-control']}", mode, delay)
    except OSError as exc:
        print(f"cannot reach the demo platform ({exc}); is the stack up?", file=sys.stderr)
        return 1
    print(
        f"demo platform is now {state['mode']}"
        + (f" ({state['delay']}s per response)" if state["mode"] == "slow" else "")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m compose.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    sub.add_parser("status")
    f = sub.add_parser("fault", help="switch the DEMO platform: ok, slow, error, down")
    f.add_argument("mode", choices=["ok", "slow", "error", "down"])
    f.add_argument("--delay", type=float, default=3.5, help="seconds per response in slow mode")
    r = sub.add_parser(
        "report", help="print the monthly cost report (flags: see the billing exporter)"
    )
    r.add_argument("extra", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "up":
            return up()
        if args.cmd == "down":
            return down()
        if args.cmd == "status":
            return status()
        if args.cmd == "report":
            return report(args.extra)
        return fault(args.mode, args.delay)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
