"""config/local/ for monitoring the real platform: `./wsinfra init` writes the parts asked for
(with placeholder secret files), `./wsinfra check` validates every config and secret there
without starting anything, one line per problem.

A part is an example config (config/example/<part>.yaml) and the secret files it names, or a
stack-level secret (Slack, PagerDuty, the deployment webhooks). Placeholders start with
PLACEHOLDER_PREFIX, which every service refuses, so nothing starts half-configured.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from common.config import PLACEHOLDER_PREFIX, read_secret_file
from compose import services
from compose.processes import ROOT
from compose.service import Stack

EXAMPLE = ROOT / "config" / "example"
# A secret file an example config names on a line that is not a comment.
_SECRET_REF = re.compile(r"^[^#\n]*?config/local/secrets/([A-Za-z0-9_]+)", re.M)

# What to put in each secret file: the placeholder says it, and `check` repeats it.
SECRET_HELP = {
    "slack_webhook_url": "the Slack incoming-webhook URL (https://hooks.slack.com/services/…)",
    "slack_finance_webhook_url": "the incoming-webhook URL of finance's Slack channel "
    "(https://hooks.slack.com/services/…), where billing alerts go",
    "pagerduty_routing_key": "the PagerDuty Events API v2 integration (routing) key, 32 characters",
    "pagerduty_escalation_routing_key": "the Events API v2 integration (routing) key of the "
    "PagerDuty service escalations page (the second level), 32 characters",
    "vercel_webhook_secret": "the secret of the Vercel webhook that sends deployment events",
    "github_webhook_secret": "the secret of the GitHub webhook that sends deployment events",
    "vercel_api_token": "a Vercel access token that can read the team's deployments",
    "vercel_logs_drain_secret": "the secret of the Vercel log drain (shown when it is created)",
    "vercel_traces_drain_secret": "the secret of the Vercel trace drain",
    "vercel_speed_insights_drain_secret": "the secret of the Vercel Speed Insights drain",
    "vercel_drain_verify_code": "the x-vercel-verify code Vercel shows when a drain is added",
    "supabase_db_password": "the database password of the monitoring role",
    "supabase_access_token": "a Supabase personal access token (sbp_…)",
    "vercel_billing_token": "a Vercel access token with the Billing role",
    "openai_admin_key": "an OpenAI Admin API key (not a project key)",
    "recorder_db_password": "the password of the recorder's database role",
    "api_probe_token": "the bearer token the uptime probe sends to the API",
    "api_db_password": "the password of the operator API's database role",
    "backups_db_password": "the password of the backup worker's role in wsinfra's database",
    "app_backup_password": "the password of the role the backup worker dumps a target with",
    "drill_scratch_password": "the password of the drill role on the scratch PostgreSQL server",
    "restore_target_password": (
        "the password of the role that creates restore databases on the restore target"
    ),
    "api_jwt_secret": "the Supabase project's JWT secret (Settings → API), at least 32 bytes",
    "api_grafana_token": "a bearer token of at least 32 characters for the Grafana machine caller",
    "vercel_deploy_hook_web_main": (
        "the URL of the Vercel deploy hook of project web, branch main "
        "(https://api.vercel.com/v1/integrations/deploy/<project id>/<hook id>)"
    ),
}


@dataclass(frozen=True, slots=True)
class Part:
    what: str
    config: str | None = None  # config/example/<config> → config/local/<config>
    secrets: tuple[str, ...] = ()  # stack-level secret files (a config's come from its text)
    folders: tuple[str, ...] = ()  # folders under config/local/ the config reads


PARTS = {
    "uptime": Part("the targets to probe", config="uptime.yaml"),
    "slack": Part("notifications to Slack", secrets=("slack_webhook_url",)),
    "pagerduty": Part("pages to PagerDuty (criticals)", secrets=("pagerduty_routing_key",)),
    "finance": Part("billing alerts to Slack #finance", secrets=("slack_finance_webhook_url",)),
    "escalation": Part(
        "escalations (criticals unacknowledged for 15 min) to a second PagerDuty service",
        secrets=("pagerduty_escalation_routing_key",),
    ),
    "vercel": Part("the Vercel exporter (API and drains)", config="vercel.yaml"),
    "supabase": Part("the Supabase exporter", config="supabase.yaml"),
    "billing": Part("the billing exporter", config="billing.yaml", folders=("invoices/supabase",)),
    "api": Part("the operator API (/api/infrastructure/)", config="api.yaml"),
    "backups": Part("backups, restore drills and point-in-time drills", config="backups.yaml"),
    "webhooks": Part(
        "deployment webhooks from Vercel and GitHub into the recorder",
        secrets=("vercel_webhook_secret", "github_webhook_secret"),
    ),
}
DEFAULT_PARTS = ("uptime", "slack")
# Stack-level secrets: required ones must exist; the others switch their feature on.
STACK_SECRETS = {"slack_webhook_url": True, "pagerduty_routing_key": False}
# Without it, #finance posts go through slack_webhook_url (alertmanager/runtime.py).
STACK_SECRETS["slack_finance_webhook_url"] = False
# Without it, escalations reach Slack only (alertmanager/runtime.py).
STACK_SECRETS["pagerduty_escalation_routing_key"] = False
STACK_SECRETS |= dict.fromkeys(PARTS["webhooks"].secrets, False)


def secrets_of(part: Part) -> tuple[str, ...]:
    named = _SECRET_REF.findall((EXAMPLE / part.config).read_text()) if part.config else []
    return tuple(dict.fromkeys([*part.secrets, *named]))


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# A path YAML reads as itself when written plain, also inside a flow mapping `{k: path, ...}`.
_PLAIN = re.compile(r"[\w./~][\w./@+~-]*(?: [\w./@+~-]+)*")


def _local_path(local: Path, rest: str) -> str:
    """`config/local/<rest>` of an example config, for the config folder `local`: quoted when
    its path would not read back plain (a folder named `a #b` or `k: v` cut the key short)."""
    path = f"{_shown(local)}/{rest}"
    return path if _PLAIN.fullmatch(path) else json.dumps(path)  # JSON is a YAML double-quoted


def init(stack: Stack, parts: list[str]) -> list[str]:
    """Write config/local/ for these parts (existing files are kept); return the lines to print."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part {', '.join(unknown)}; parts: {', '.join(PARTS)}")
    local = stack.config_dir
    secrets = local / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    secrets.chmod(0o700)
    out: list[str] = []
    to_fill: list[Path] = []
    for name in dict.fromkeys(parts):
        part = PARTS[name]
        if part.config:
            target = local / part.config
            if target.exists():
                out.append(f"kept   {_shown(target)} (exists)")
            else:
                text = (EXAMPLE / part.config).read_text()
                # The example names config/local/...; a config folder elsewhere is named instead.
                text = re.sub(
                    r"config/local/([^\s,}\]#]*)", lambda m: _local_path(local, m[1]), text
                )
                target.write_text(text)
                out.append(f"wrote  {_shown(target)} ({part.what}; edit it)")
        for folder in part.folders:
            (local / folder).mkdir(parents=True, exist_ok=True)
        for secret in secrets_of(part):
            path = secrets / secret
            # A link whose target is absent is kept too: writing through it would create a
            # file wherever it points.
            if path.exists() or path.is_symlink():
                out.append(f"kept   {_shown(path)} (exists)")
                continue
            path.write_text(f"{PLACEHOLDER_PREFIX}: {SECRET_HELP[secret]}\n")
            path.chmod(0o600)
            to_fill.append(path)
            out.append(f"wrote  {_shown(path)} (a placeholder)")
    out.append("")
    out.append("Next:")
    step = 1
    if "uptime" in parts:
        out.append(f"  {step}. $EDITOR {_shown(local / 'uptime.yaml')}   # your targets")
        step += 1
    if to_fill:
        out.append(f"  {step}. put the real value in each secret file (each holds a placeholder):")
        out += [f"       {_shown(p)}: {SECRET_HELP[p.name]}" for p in to_fill]
        step += 1
    out.append(
        f"  {step}. ./wsinfra check                      # every config and secret, one line per problem"
    )
    out.append(
        f"  {step + 1}. WSINFRA_REGION=eu-west ./wsinfra up   # the region these probes run from"
    )
    return out


def secret_problem(path: Path, required: bool) -> str | None:
    """What is wrong with one stack-level secret file (None: fine, or optional and absent)."""
    # Read, not stat first: a folder we may not list is "cannot read", never a traceback.
    try:
        value = read_secret_file(path)
    except FileNotFoundError:
        return f"{_shown(path)}: missing: {SECRET_HELP[path.name]}" if required else None
    except OSError as exc:
        return f"{_shown(path)}: cannot read: {exc.strerror}"
    if not value:
        return f"{_shown(path)}: empty: {SECRET_HELP[path.name]}"
    if value.startswith(PLACEHOLDER_PREFIX):
        return f"{_shown(path)}: still the placeholder: put {SECRET_HELP[path.name]} in it"
    if value.startswith("\ufeff"):
        # An editor's byte-order mark would be part of the secret: every signature would fail.
        return f"{_shown(path)}: starts with a byte-order mark: save it as UTF-8 without BOM"
    if path.name in ("slack_webhook_url", "slack_finance_webhook_url"):
        url = re.match(r"(https?)://(\[[^\]\s]*\]|[^\s/:\[]+)(?::\d+)?/\S+$", value)
        if not url:
            return f"{_shown(path)}: not a URL: {SECRET_HELP[path.name]}"
        # The URL is the credential: plain http only to this machine (a local stand-in).
        if url[1] == "http" and url[2] not in ("127.0.0.1", "localhost", "[::1]"):
            return f"{_shown(path)}: not https: {SECRET_HELP[path.name]}"
    if path.name in (
        "pagerduty_routing_key",
        "pagerduty_escalation_routing_key",
    ) and not re.fullmatch(r"[A-Za-z0-9]{32}", value):
        return f"{_shown(path)}: not 32 letters and digits: {SECRET_HELP[path.name]}"
    return None


def stack_secret_problems(stack: Stack) -> list[str]:
    secrets = stack.config_dir / "secrets"
    found = (secret_problem(secrets / n, required) for n, required in STACK_SECRETS.items())
    return [p for p in found if p]


def check(stack: Stack) -> tuple[list[str], list[str]]:
    """(problems, what was checked): every config in config/local/ by its own service's
    --check-config (which reads the secrets it names), and the stack-level secrets."""
    local = stack.config_dir
    if not (local / "uptime.yaml").exists():
        return [
            f"{_shown(local / 'uptime.yaml')}: missing (./wsinfra init writes config/local/; "
            "without it ./wsinfra up runs the DEMO)"
        ], []
    problems = stack_secret_problems(stack)
    checked = [f"{_shown(local / 'secrets')}/ (stack secrets)"]
    # Each config by its own service; the API's command line names its command first.
    commands = {
        "uptime": [],
        "vercel": [],
        "supabase": [],
        "billing": [],
        "api": ["serve"],
        "backups": [],
    }
    for name, command in commands.items():
        path = local / f"{name}.yaml"
        if not path.exists():
            continue
        checked.append(_shown(path))
        program = services.by_name(name).program.argv()
        res = subprocess.run(
            [*program, *command, "--config.file", str(path), "--check-config"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        if res.returncode != 0:
            # A config error is one line per problem, each naming the file; anything else
            # (a crash) is shown by its last line.
            lines = problem_lines(res.stderr, path)
            last = (res.stderr.strip().splitlines() or ["refused"])[-1]
            problems += lines or [f"{_shown(path)}: {last}"]
    return problems, checked


def problem_lines(stderr: str, path: Path) -> list[str]:
    """The `  <path>: ...` lines of a service's ConfigError, one per problem. A YAML error goes
    on over more lines: its reasons and positions are folded into its line, the source lines
    it echoes (indented further, and which may hold anything typed there) are dropped."""
    out: list[str] = []
    for line in stderr.splitlines():
        if line.startswith(f"  {path}: "):
            out.append(line.strip())
        elif out and line.strip() and not line.startswith("    "):
            at = re.search(r"line (\d+), column (\d+)", line)
            out[-1] += f" (line {at[1]}, column {at[2]})" if at else f": {line.strip()}"
    return out
