"""Config writers of the DEMO stand-ins (fakes/): the platform, the Slack/PagerDuty sink and the
Supabase, Vercel and billing APIs. Each writes what it shares with the service it stands in for
(tokens, keys, certificate) and returns its arguments."""

from __future__ import annotations

from pathlib import Path

from compose import demo
from compose.service import Service, Stack


def invoices_dir(stack: Stack) -> Path:
    """Where the DEMO billing APIs write Supabase invoices and the billing exporter reads them."""
    return stack.run / "demo" / "invoices"


def platform(stack: Stack, service: Service) -> list[str]:
    cert, key = demo.ensure_demo_certificate(stack.run / "demo" / "tls")
    return [
        "serve",
        "--listen", stack.listen("PLATFORM"),
        "--control", stack.listen("PLATFORM_CONTROL"),
        "--tls-listen", stack.listen("PLATFORM_TLS"),
        "--tls-cert", str(cert),
        "--tls-key", str(key),
    ]  # fmt: skip


def sink(stack: Stack, service: Service) -> list[str]:
    # The webhook URL and routing key: the files Alertmanager reads (service_configs.provide_secrets).
    return demo.sink_args(stack.listen(service.port.key), str(stack.secrets))


def supabase_api(stack: Stack, service: Service) -> list[str]:
    demo.write_demo_supabase_keys(stack.secrets / "supabase_keys")
    return [
        "--listen", stack.listen(service.port.key),
        "--token-file", str(stack.secrets / "supabase_access_token"),
        "--keys-dir", str(stack.secrets / "supabase_keys"),
    ]  # fmt: skip


def vercel_api(stack: Stack, service: Service) -> list[str]:
    demo.write_demo_tokens(stack.secrets, demo.VERCEL_SECRET_FILES.values())
    # The operator API's demo deploy hook: the fake serves the hook the file names.
    demo.write_demo_deploy_hook(stack.secrets, stack.url(service.port.key))
    return [
        "--listen", stack.listen(service.port.key),
        "--secrets-dir", str(stack.secrets),
        "--project-id", demo.DEMO_VERCEL_PROJECT_ID,
        "--team-id", demo.DEMO_VERCEL_TEAM_ID,
        "--exporter", stack.url("VERCEL"),
        "--platform-control", stack.listen("PLATFORM_CONTROL"),
        "--recorder", stack.url("RECORDER"),
    ]  # fmt: skip


def billing_api(stack: Stack, service: Service) -> list[str]:
    demo.write_demo_tokens(stack.secrets, demo.BILLING_SECRET_FILES.values())
    return [
        "--vercel-listen", stack.listen("BILLING_VERCEL_API"),
        "--openai-listen", stack.listen("BILLING_OPENAI_API"),
        "--secrets-dir", str(stack.secrets),
        "--team-id", demo.DEMO_BILLING_TEAM_ID,
        "--invoices-dir", str(invoices_dir(stack)),
    ]  # fmt: skip


def billing_api_label(stack: Stack) -> str:
    return f"DEMO billing APIs: Vercel FOCUS charges; OpenAI costs on {stack.url('BILLING_OPENAI_API')}"
