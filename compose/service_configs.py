"""Config writers of the stack's own services: the exporters, the recorder, Alertmanager and
Prometheus. Each writes its runtime config into .run/config/ (or takes the user's from
config/local/), validates it, and returns the service's arguments; plus the conditions that
switch optional services on and the labels made from the stack."""

from __future__ import annotations

import secrets as random_secrets
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from alert_rules.config import load_rules
from alertmanager.runtime import Placement, write_placed
from compose import database, demo
from compose.fake_configs import invoices_dir
from compose.processes import (
    ROOT,
    alertmanager_flags,
    amtool_binary,
    check_output,
    prometheus_flags,
    promtool_binary,
)
from compose.prometheus_config import dump, prometheus_config, targets
from compose.service import HOST, Condition, Service, Stack

# Provider webhooks are optional: enabled by dropping their secret next to the others.
OPTIONAL_WEBHOOKS = {
    "vercel_secret_file": "vercel_webhook_secret",
    "github_secret_file": "github_webhook_secret",
}


def provide_secrets(stack: Stack) -> None:
    """The DEMO writes its secrets (the sink accepts them); real mode has its own, checked by
    compose.local_config before anything starts."""
    if stack.demo:
        demo.write_demo_secrets(stack.secrets, stack.url("SINK"))


def demo_or_configured(filename: str) -> Condition:
    """On in the DEMO, and in real mode when config/local/<filename> exists."""

    def enabled(stack: Stack) -> bool:
        return stack.demo or (stack.config_dir / filename).exists()

    return enabled


def _check(service: Service, config: Path) -> None:
    check_output([*service.program.argv(), "--config.file", str(config), "--check-config"])


def _serve(stack: Stack, service: Service, config: Path) -> list[str]:
    return ["--config.file", str(config), "--web.listen-address", stack.listen(service.port.key)]


def uptime(stack: Stack, service: Service) -> list[str]:
    # One config for every region's exporter, written and checked once.
    config = stack.once("uptime", lambda: _uptime_config(stack, service))
    return _serve(stack, service, config)


def _uptime_config(stack: Stack, service: Service) -> Path:
    if stack.demo:
        config = stack.generated / "uptime.yaml"
        doc = demo.demo_uptime_config(
            stack.url("PLATFORM"), https_url=f"https://{stack.listen('PLATFORM_TLS')}"
        )
        only = stack.env.get("WSINFRA_DEMO_TARGETS")
        if only:
            # Benchmarks probe exactly what their baseline probes.
            doc["targets"] = [t for t in doc["targets"] if t["name"] in only.split(",")]
        config.write_text(demo.dump(doc, "# DEMO targets\n"))
    else:
        config = stack.config_dir / "uptime.yaml"
    _check(service, config)
    return config


def vercel(stack: Stack, service: Service) -> list[str]:
    if stack.demo:
        config = stack.generated / "vercel.yaml"
        doc = demo.demo_vercel_config(
            stack.url("VERCEL_API"),
            str(stack.secrets),
            str(stack.run / "data" / "vercel" / "state.json"),
        )
        config.write_text(
            demo.dump(
                doc, "# DEMO: the Vercel exporter against the fake Vercel API and drain feed\n"
            )
        )
    else:
        config = stack.config_dir / "vercel.yaml"
    _check(service, config)
    return _serve(stack, service, config)


class Database(NamedTuple):
    conninfo: str  # never with a password
    password_file: Path | None


def recorder_database(stack: Stack) -> Database:
    """The recorder's database on the machine's PostgreSQL, created if missing; the Supabase
    exporter watches it and the billing exporter writes cost_tracking into it."""

    def make() -> Database:
        pwfile = database.password_file()
        return Database(database.ensure_database(stack.recorder_db, pwfile), pwfile)

    return stack.once("database", make)


def _with_password_file(conninfo_key: str, db: Database) -> dict[str, Any]:
    out: dict[str, Any] = {conninfo_key: db.conninfo}
    if db.password_file is not None:
        out["password_file"] = str(db.password_file)
    return out


def recorder(stack: Stack, service: Service) -> list[str]:
    token = stack.secrets / "recorder_token"
    if not token.exists():
        # Internal to this stack (Alertmanager → recorder): made here, never typed by anyone.
        token.write_text(random_secrets.token_urlsafe(32) + "\n")
        token.chmod(0o600)
    db = recorder_database(stack)
    hooks = {"alertmanager_token_file": str(token)}
    for key, name in OPTIONAL_WEBHOOKS.items():
        if (stack.secrets / name).is_file():
            hooks[key] = str(stack.secrets / name)
    config = stack.generated / "recorder.yaml"
    doc = {
        "database": _with_password_file("conninfo", db),
        "webhooks": hooks,
        "journal": {"directory": str(stack.run / "recorder-journal")},
    }
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    check_output([*service.program.argv(), "migrate", "--config.file", str(config)])
    if stack.demo:
        database.seed_demo_users(db.conninfo, db.password_file)
    return ["serve", *_serve(stack, service, config)]


def api(stack: Stack, service: Service) -> list[str]:
    """The operator API: config/local/api.yaml in real mode; in the DEMO on the stack's own
    database (the recorder migrated it) and Alertmanager, with the demo ops machine caller."""
    if stack.demo:
        db = recorder_database(stack)
        config = stack.generated / "api.yaml"
        doc = demo.demo_api_config(
            db.conninfo,
            str(db.password_file) if db.password_file else None,
            str(stack.secrets),
            stack.url("ALERTMANAGER").rstrip("/"),
            stack.url("RECORDER", "/runbooks"),
            stack.url("PROMETHEUS").rstrip("/"),
        )
        # POST /backups and the disaster-recovery plan: the backup worker's demo target (the
        # stack's own database, its dumps under .run/backups) and its restore target.
        doc["backups"] = demo.demo_api_backups(str(stack.run / "backups"))
        # The demo Vercel's deploy hook (also written when the fake starts; the same content).
        demo.write_demo_deploy_hook(stack.secrets, stack.url("VERCEL_API"))
        config.write_text(demo.dump(doc, "# DEMO: the operator API (compose/demo.py)\n"))
    else:
        config = stack.config_dir / "api.yaml"
    check_output([*service.program.argv(), "serve", "--config.file", str(config), "--check-config"])
    return ["serve", *_serve(stack, service, config)]


def api_label(stack: Stack) -> str:
    token = (
        f"; ops token: {stack.secrets / 'api_demo_token'}, developer (may deploy): "
        f"{stack.secrets / 'api_demo_developer_token'}, admin (backups, disaster recovery): "
        f"{stack.secrets / 'api_demo_admin_token'}"
        if stack.demo
        else ""
    )
    return f"operator API /api/infrastructure/ (openapi.json){token}"


def recorder_label(stack: Stack) -> str:
    return f"recorder → PostgreSQL database {stack.recorder_db}"


def supabase(stack: Stack, service: Service) -> list[str]:
    """config/local/supabase.yaml when there is one, otherwise the SQL collectors on this
    stack's own PostgreSQL (the recorder's database): real data either way; in the DEMO also the
    Management API parts, from the fake. Unless the config says otherwise, the Management API's
    backups are mirrored into backup_status in the recorder's database (`record:`), as billing's
    cost_tracking."""
    own = stack.config_dir / "supabase.yaml"
    doc: Any
    if own.exists():
        doc = yaml.safe_load(own.read_text()) or {}
        # `record: null` keeps the mirror off; a file that is not a mapping is reported by the
        # exporter's own check.
        if not isinstance(doc, dict) or "management" not in doc or "record" in doc:
            _check(service, own)
            return _serve(stack, service, own)
        header = f"# {own}, its backups mirrored into this stack's database.\n"
    else:
        db = recorder_database(stack)
        entry: dict[str, object] = {"name": "local", **_with_password_file("conninfo", db)}
        if not database.enable_pg_stat_statements(db.conninfo, db.password_file):
            entry["disabled_collectors"] = ["statements"]
            print(
                "note: this PostgreSQL does not preload pg_stat_statements, so slow statements are "
                "not collected (add shared_preload_libraries = 'pg_stat_statements' and restart it)"
            )
        doc = {"databases": [entry]}
        if stack.demo:
            api = stack.url("SUPABASE_API")
            doc["management"] = demo.demo_supabase_management(
                api, str(stack.secrets / "supabase_access_token")
            )
            doc["project_metrics"] = demo.demo_project_metrics(
                api, str(stack.secrets / "supabase_keys")
            )
        header = (
            "# The stack's own PostgreSQL, monitored by the Supabase exporter's SQL collectors"
            + (
                " (backups and health: the DEMO Management API, its backups mirrored into"
                " backup_status)"
                if stack.demo
                else ""
            )
            + ".\n"
        )
    if "management" in doc:
        # The database the recorder migrates (backup_status and its 0013 columns).
        doc = {**doc, "record": _with_password_file("conninfo", recorder_database(stack))}
    config = stack.generated / "supabase.yaml"
    config.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    _check(service, config)
    return _serve(stack, service, config)


def supabase_label(stack: Stack) -> str:
    own = stack.config_dir / "supabase.yaml"
    if own.exists():
        return f"Supabase exporter ({own})"
    return f"Supabase exporter: SQL collectors on this stack's PostgreSQL ({stack.recorder_db})" + (
        "; DEMO Management API, its backups → backup_status" if stack.demo else ""
    )


def supabase_projects_scraped(stack: Stack) -> bool:
    """Supabase's own metrics are scraped where the exporter re-exposes them: the DEMO, or a
    config/local/supabase.yaml with a project_metrics section."""
    own = stack.config_dir / "supabase.yaml"
    if own.exists():
        return "project_metrics" in (yaml.safe_load(own.read_text()) or {})
    return stack.demo


def billing(stack: Stack, service: Service) -> list[str]:
    """Unless its config says otherwise, the billing exporter's scheduled job writes the spec's
    cost_tracking table into this stack's recorder database."""
    doc: dict[str, Any]
    if stack.demo:
        doc = demo.demo_billing_config(
            stack.url("BILLING_VERCEL_API"),
            stack.url("BILLING_OPENAI_API"),
            str(stack.secrets),
            str(invoices_dir(stack)),
        )
    else:
        doc = yaml.safe_load((stack.config_dir / "billing.yaml").read_text())
    if "cost_tracking" not in doc:
        doc = {**doc, "cost_tracking": _with_password_file("conninfo", recorder_database(stack))}
    config = stack.generated / "billing.yaml"
    config.write_text(
        ("# DEMO: billing APIs and invoices from the fakes\n" if stack.demo else "")
        + yaml.safe_dump(doc, sort_keys=False)
    )
    _check(service, config)
    return _serve(stack, service, config)


def billing_label(stack: Stack) -> str:
    return f"billing exporter → cost_tracking in {stack.recorder_db}; report: ./wsinfra report"


def alertmanager(stack: Stack, service: Service) -> list[str]:
    config = write_placed(
        stack.generated / "alertmanager.yml",
        Placement(
            secrets_dir=stack.secrets,
            # The DEMO pages the sink instead of PagerDuty.
            pagerduty_url=stack.url("SINK", "/v2/enqueue") if stack.demo else None,
            # Real mode pages only with a routing key (./wsinfra init --with pagerduty).
            pagerduty=stack.demo or (stack.secrets / "pagerduty_routing_key").is_file(),
            # Escalations page the escalation service only with its own key (else Slack only).
            pagerduty_escalation=stack.demo
            or (stack.secrets / "pagerduty_escalation_routing_key").is_file(),
            # #finance through its own webhook when given (./wsinfra init --with finance).
            finance_slack=stack.demo or (stack.secrets / "slack_finance_webhook_url").is_file(),
            recorder_url=f"http://{stack.listen('RECORDER')}",
        ),
    )
    check_output([amtool_binary(), "check-config", str(config)])
    return alertmanager_flags(
        config, stack.port(service.port.key), stack.run / "data" / "alertmanager"
    )


def rule_files(stack: Stack) -> list[str]:
    """The committed alert rules; or, when their runbook links name a loopback recorder that is
    not this stack's (WSINFRA_RECORDER_PORT moved it), a copy in .run/ whose links name this
    stack's recorder, so every link in its messages opens. A public base URL is left alone."""
    generated = ROOT / "alert_rules" / "generated"
    base = load_rules().runbook_base_url.rstrip("/")
    served = stack.url("RECORDER", "/runbooks")
    if base == served or not base.startswith(f"http://{HOST}:"):
        return [str(generated / "*.yml")]
    out = stack.generated / "rules"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.yml"):
        stale.unlink()
    for path in sorted(generated.glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                annotations = rule.get("annotations", {})
                url = annotations.get("runbook_url")
                if url and url.startswith(base + "/"):
                    annotations["runbook_url"] = served + url[len(base) :]
        (out / path.name).write_text(
            "# Generated by compose/stack.py from alert_rules/generated/ with this stack's "
            "runbook address. Do not edit.\n" + yaml.safe_dump(doc, sort_keys=False)
        )
    return [str(out / "*.yml")]


def prometheus(stack: Stack, service: Service) -> list[str]:
    """Scrapes every running service that has a scrape job, at its address here."""
    config = stack.generated / "prometheus.yml"
    doc = prometheus_config(
        rules=load_rules(),
        rule_files=rule_files(stack),
        alertmanager=stack.listen("ALERTMANAGER"),
        targets=targets(
            stack.services,
            lambda s: stack.listen(s.port.key),
            lambda scrape: scrape.enabled_when(stack),
        ),
    )
    config.write_text(dump(doc, "# Generated by compose/stack.py. Do not edit.\n"))
    check_output([promtool_binary(), "check", "config", str(config)])
    return prometheus_flags(config, stack.port(service.port.key), stack.run / "data" / "prometheus")


def backups(stack: Stack, service: Service) -> list[str]:
    """The backup worker: config/local/backups.yaml in real mode; in the DEMO it backs up and
    restores this stack's own database every few minutes (the recorder migrated it)."""
    if stack.demo:
        db = recorder_database(stack)
        doc = demo.demo_backups_config(
            db.conninfo,
            str(db.password_file) if db.password_file else None,
            str(stack.run / "backups"),
        )
        config = stack.generated / "backups.yaml"
        config.write_text(
            demo.dump(doc, "# DEMO: backups and restore drills of the stack's database\n")
        )
    else:
        config = stack.config_dir / "backups.yaml"
    _check(service, config)
    return _serve(stack, service, config)


def backups_label(stack: Stack) -> str:
    config = stack.generated / "backups.yaml" if stack.demo else stack.config_dir / "backups.yaml"
    demo_note = "DEMO: backs up and drills the stack's database every 5 min; " if stack.demo else ""
    return f"backup worker ({demo_note}drill now: python -m backups drill --config.file {config} --target …)"
