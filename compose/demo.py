"""What the demo probes and where its notifications go: the stand-in platform and the local sink."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

# Fake credentials the local sink accepts; they open nothing anywhere else.
DEMO_SLACK_PATH = "T0DEMO/B0DEMO/demo-webhook-token"
DEMO_SLACK_CHANNEL = "#ops-alerts"
# Finance's own Slack app in the demo: billing alerts show in the sink under #finance.
DEMO_FINANCE_SLACK_PATH = "T0DEMO/B0FINANCE/demo-finance-webhook-token"
DEMO_FINANCE_SLACK_CHANNEL = "#finance"
DEMO_PAGER_KEY = "demo0000000000000000000000000000"  # 32 characters, as PagerDuty requires
# The escalation service (alertmanager.yml receiver `escalation`, api/escalation.py).
DEMO_PAGER_ESCALATION_KEY = "demoescalation000000000000000000"
DEMO_RECORDER_TOKEN = "demo-recorder-token"  # noqa: S105 - demo-only, opens nothing


def demo_uptime_config(
    base_url: str,
    *,
    interval: str = "5s",
    timeout: str = "4500ms",
    https_url: str | None = None,
) -> dict[str, Any]:
    """Targets on the stand-in platform: pages, an API health check, a redirect, a TCP port,
    and with `https_url` the home page over HTTPS (a self-signed certificate, so not verified;
    its expiry and headers are measured all the same)."""
    base = base_url.rstrip("/")
    host_port = base.split("://", 1)[1]
    return {
        "interval": interval,
        "timeout": timeout,
        "concurrency": 16,
        "jitter": 0.2,
        "confirm_attempts": 2,
        "confirm_delay": "1s",
        "targets": [
            {
                "name": "web-home",
                "service": "web",
                "http": {"url": f"{base}/", "body_match": "WedSync"},
            },
            {"name": "web-dashboard", "service": "web", "http": {"url": f"{base}/p/dashboard"}},
            {
                "name": "api-health",
                "service": "api",
                "http": {
                    "url": f"{base}/api/health",
                    "expect_status": [200],
                    "body_match": '"status": ?"ok"',
                },
            },
            {"name": "web-legacy-redirect", "service": "web", "http": {"url": f"{base}/old-home"}},
            {"name": "web-tcp", "service": "web", "tcp": {"address": host_port}},
            *(
                [
                    {
                        "name": "web-https",
                        "service": "web",
                        "http": {"url": f"{https_url.rstrip('/')}/", "tls_verify": False},
                    }
                ]
                if https_url
                else []
            ),
        ],
    }


DEMO_VERCEL_PROJECT_ID = "prj_demo0000000000000000000001"
DEMO_VERCEL_TEAM_ID = "team_demo000000000000000001"
# Secret files the Vercel exporter reads; in the demo the fake API and drain feed use the same.
VERCEL_SECRET_FILES = {
    "token_file": "vercel_api_token",
    "logs": "vercel_logs_drain_secret",
    "traces": "vercel_traces_drain_secret",
    "speed_insights": "vercel_speed_insights_drain_secret",
    "verify_code_file": "vercel_drain_verify_code",
}


def demo_vercel_config(
    api_url: str, secrets_dir: str, state_file: str, spool_dir: str | None = None
) -> dict[str, Any]:
    """The Vercel exporter against the DEMO API, with all three drains fed by the demo feed.
    `spool_dir`: where signed drain bodies over 1 MiB wait for their signature check (compose's
    root filesystem is read-only, so there it is on the state volume)."""
    sec = secrets_dir.rstrip("/")
    return {
        "api": {
            "base_url": api_url,
            "token_file": f"{sec}/{VERCEL_SECRET_FILES['token_file']}",
            "team_id": DEMO_VERCEL_TEAM_ID,
            "refresh_interval": "15s",
            "timeout": "5s",
            "state_file": state_file,
        },
        "projects": [{"id": DEMO_VERCEL_PROJECT_ID, "name": "web"}],
        "drains": {
            **{
                name: {"secret_file": f"{sec}/{VERCEL_SECRET_FILES[name]}"}
                for name in ("logs", "traces", "speed_insights")
            },
            "verify_code_file": f"{sec}/{VERCEL_SECRET_FILES['verify_code_file']}",
            **({"spool_dir": spool_dir} if spool_dir else {}),
        },
    }


def write_demo_tokens(secrets_dir: Path, names: Iterable[str]) -> None:
    """A random token per file, kept across restarts: the stack's exporter and the fake it talks
    to read the same file."""
    import secrets

    secrets_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = secrets_dir / name
        if not path.exists():
            path.write_text(f"demo-{secrets.token_hex(16)}\n", encoding="utf-8")
            path.chmod(0o600)


def ensure_demo_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, valid 90 days like Let's Encrypt's, made once."""
    import subprocess

    cert, key = directory / "cert.pem", directory / "key.pem"
    if not cert.exists() or not key.exists():
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "90",
                "-subj", "/CN=wsinfra-demo", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        key.chmod(0o600)
    return cert, key


DEMO_SUPABASE_REF = "wsinfrademo0000000001"  # fakes/supabase_api.py serves it


DEMO_SUPABASE_KEY = "sb_secret_demo00000000000000000000"


def demo_project_metrics(api_url: str, keys_dir: str) -> dict[str, Any]:
    return {
        "url_template": api_url.rstrip("/")
        + "/metrics-endpoint/{ref}/customer/v1/privileged/metrics",
        "keys_dir": keys_dir,
        "projects": [DEMO_SUPABASE_REF],
    }


def write_demo_supabase_keys(keys_dir: Path) -> None:
    keys_dir.mkdir(parents=True, exist_ok=True)
    path = keys_dir / DEMO_SUPABASE_REF
    path.write_text(DEMO_SUPABASE_KEY + "\n", encoding="utf-8")
    path.chmod(0o600)


def demo_supabase_management(api_url: str, token_file: str) -> dict[str, Any]:
    return {
        "base_url": api_url.rstrip("/"),
        "token_file": token_file,
        "refresh_interval": "30s",
        "timeout": "5s",
        "stale_after": "5m",
        "projects": [{"ref": DEMO_SUPABASE_REF, "pitr_required": True}],
    }


DEMO_BILLING_TEAM_ID = DEMO_VERCEL_TEAM_ID
BILLING_SECRET_FILES = {"vercel": "vercel_billing_token", "openai": "openai_admin_key"}


def demo_billing_config(
    vercel_url: str, openai_url: str, secrets_dir: str, invoices_dir: str
) -> dict[str, Any]:
    """The billing exporter against the DEMO billing APIs and a folder of Supabase invoices.
    Refreshed every minute so the demo moves (the real default is hourly)."""
    sec = secrets_dir.rstrip("/")
    return {
        "monthly_budget_usd": 500,
        "refresh_interval": "1m",
        "vercel": {
            "base_url": vercel_url.rstrip("/"),
            "token_file": f"{sec}/{BILLING_SECRET_FILES['vercel']}",
            "team_id": DEMO_BILLING_TEAM_ID,
            "timeout": "10s",
        },
        "openai": {
            "base_url": openai_url.rstrip("/"),
            "token_file": f"{sec}/{BILLING_SECRET_FILES['openai']}",
            "timeout": "10s",
        },
        "folders": [{"name": "supabase", "path": invoices_dir}],
    }


# The operator API in the DEMO: tokens are signed with this secret, and the demo ops machine
# caller presents the token (curl -H "Authorization: Bearer $(cat …/api_demo_token)").
DEMO_API_JWT_SECRET = "demo-api-jwt-secret-0000000000000000"  # noqa: S105 - demo-only
DEMO_API_TOKEN = "demo-api-ops-token-00000000000000000000"  # noqa: S105 - demo-only
DEMO_API_MACHINE_USER = "00000000-0000-4000-8000-0000000000a1"
DEMO_API_ISSUER = "http://127.0.0.1/wsinfra-demo/auth/v1"
# A second demo machine caller, role developer: the deployments policy lets it deploy (POST
# /deployments through the demo Vercel's deploy hook); the ops one is refused.
DEMO_API_DEVELOPER_TOKEN = "demo-api-developer-token-000000000000000"  # noqa: S105 - demo-only
DEMO_API_DEVELOPER_USER = "00000000-0000-4000-8000-0000000000a2"
# A third, role admin: backups and the disaster-recovery plan are the spec's admin-only tables
# (backup_status's policy), so the demo needs an admin to show them.
DEMO_API_ADMIN_TOKEN = "demo-api-admin-token-0000000000000000000"  # noqa: S105 - demo-only
DEMO_API_ADMIN_USER = "00000000-0000-4000-8000-0000000000a3"
# The demo Vercel's deploy hook for project web, branch main (production). Like a real hook's,
# its URL is a secret file (vercel_deploy_hook_url) the API and the fake both read.
DEMO_DEPLOY_HOOK_ID = "demoHookMain00000001"
DEPLOY_HOOK_FILE = "vercel_deploy_hook_url"


def demo_deploy_hook_url(vercel_api_url: str) -> str:
    return (
        f"{vercel_api_url.rstrip('/')}/v1/integrations/deploy/"
        f"{DEMO_VERCEL_PROJECT_ID}/{DEMO_DEPLOY_HOOK_ID}"
    )


def write_demo_deploy_hook(secrets_dir: Path, vercel_api_url: str) -> None:
    secrets_dir.mkdir(parents=True, exist_ok=True)
    path = secrets_dir / DEPLOY_HOOK_FILE
    path.write_text(demo_deploy_hook_url(vercel_api_url) + "\n", encoding="utf-8")
    path.chmod(0o600)


def demo_api_config(
    conninfo: str,
    password_file: str | None,
    secrets_dir: str,
    alertmanager_url: str,
    runbook_base_url: str,
    prometheus_url: str,
) -> dict[str, Any]:
    """The operator API on the stack's database and Alertmanager, with one machine caller
    (role ops) whose token the demo writes beside its other secrets."""
    database: dict[str, Any] = {"conninfo": conninfo}
    if password_file is not None:
        database["password_file"] = password_file
    return {
        "database": database,
        "auth": {"jwt_secret_file": f"{secrets_dir}/api_jwt_secret", "issuer": DEMO_API_ISSUER},
        "machine_tokens": [
            {
                "name": "demo-ops",
                "token_file": f"{secrets_dir}/api_demo_token",
                "role": "ops",
                "user_id": DEMO_API_MACHINE_USER,
            },
            {
                "name": "demo-developer",
                "token_file": f"{secrets_dir}/api_demo_developer_token",
                "role": "developer",
                "user_id": DEMO_API_DEVELOPER_USER,
            },
            {
                "name": "demo-admin",
                "token_file": f"{secrets_dir}/api_demo_admin_token",
                "role": "admin",
                "user_id": DEMO_API_ADMIN_USER,
            },
        ],
        "deploy_hooks": {
            "hooks": [
                {
                    "project": "web",
                    "environment": "production",
                    "git_branch": "main",
                    "hook_url_file": f"{secrets_dir}/{DEPLOY_HOOK_FILE}",
                }
            ]
        },
        "alertmanager_url": alertmanager_url,
        "prometheus_url": prometheus_url,
        "runbook_base_url": runbook_base_url,
    }


# The demo backs up and restores its own database every few minutes, so a new user sees the
# record, drills, RTO and RPO within minutes (the real defaults are daily).
DEMO_BACKUP_TARGET = "wsinfra"
DEMO_RESTORE_TARGET = "drill-restore"


def demo_backups_config(
    conninfo: str, password_file: str | None, location: str, *, scratch: str = "private"
) -> dict[str, Any]:
    """The backup worker on the stack's own database: dumps, drills into a private cluster (or,
    where no initdb can run, a scratch database on the same server), and a restore target for
    the disaster-recovery API's executed restores."""
    db: dict[str, Any] = {"conninfo": conninfo}
    if password_file is not None:
        db["password_file"] = password_file
    drill: dict[str, Any] = {
        "schedule": "5m",
        "window": "30m",
        "smoke_queries": ["SELECT 1 FROM schema_migrations LIMIT 1"],
    }
    if scratch != "private":
        drill["scratch"] = {**db, "database_prefix": "wsinfra_drill"}
    return {
        "demo": True,
        "record": db,
        "location": location,
        "targets": [
            {
                "name": DEMO_BACKUP_TARGET,
                "source": {**db, "statement_timeout": "10m"},
                "schedule": "5m",
                "max_age": "20m",
                # Two days: BackupExpiringWithoutNewer pages when the newest backup expires
                # within a day, which a one-day retention would always be.
                "retention_days": 2,
                "drill": drill,
            }
        ],
        "restore_targets": [{**db, "name": DEMO_RESTORE_TARGET}],
    }


def demo_api_backups(location: str) -> dict[str, Any]:
    """The operator API's backups section: the worker's demo target (its dumps under
    `location`) and restore target, and the retention the worker keeps them for."""
    return {
        "targets": [{"name": DEMO_BACKUP_TARGET}],
        "location": location,
        "restore_targets": [DEMO_RESTORE_TARGET],
        "retention_policy": {"database_retention_days": 2},
    }


def write_demo_secrets(secrets_dir: Path, sink_url: str) -> None:
    secrets_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "slack_webhook_url": f"{sink_url.rstrip('/')}/services/{DEMO_SLACK_PATH}",
        "slack_finance_webhook_url": f"{sink_url.rstrip('/')}/services/{DEMO_FINANCE_SLACK_PATH}",
        "pagerduty_routing_key": DEMO_PAGER_KEY,
        "pagerduty_escalation_routing_key": DEMO_PAGER_ESCALATION_KEY,
        "recorder_token": DEMO_RECORDER_TOKEN,
        # The demo Vercel sends deployment webhooks to the recorder, signed with this.
        "vercel_webhook_secret": "demo-vercel-webhook-secret",
        "supabase_access_token": "sbp_demo0000000000000000000000000000000000",
        "api_jwt_secret": DEMO_API_JWT_SECRET,
        "api_demo_token": DEMO_API_TOKEN,
        "api_demo_developer_token": DEMO_API_DEVELOPER_TOKEN,
        "api_demo_admin_token": DEMO_API_ADMIN_TOKEN,
    }
    for name, value in files.items():
        path = secrets_dir / name
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o600)


def sink_args(listen: str, secrets_dir: str) -> list[str]:
    """The sink reads the webhook URL and routing key from the files Alertmanager reads."""
    return [
        "--listen",
        listen,
        "--slack-webhook-url-file",
        f"{secrets_dir}/slack_webhook_url={DEMO_SLACK_CHANNEL}",
        "--slack-webhook-url-file",
        f"{secrets_dir}/slack_finance_webhook_url={DEMO_FINANCE_SLACK_CHANNEL}",
        "--pager-key-file",
        f"{secrets_dir}/pagerduty_routing_key",
        "--pager-key-file",
        f"{secrets_dir}/pagerduty_escalation_routing_key",
    ]


def dump(doc: dict[str, Any], header: str = "") -> str:
    return header + yaml.safe_dump(doc, sort_keys=False)
