"""Schemathesis against the API as it runs (`python -m api serve` on a real port, a real
PostgreSQL and Alertmanager): generated requests for every operation in the served OpenAPI
document, as an admin, get no 5xx and answers that conform to the document (status, content
type, headers, body schema); invalid ones are refused; secured ones refuse a missing token, and
the PagerDuty webhook (signed, not bearer-authenticated) refuses every unsigned delivery."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from compose.processes import free_port, python_argv, spawn, stop, wait_ready
from tests.api.conftest import as_user, pagerduty_config, write_config
from tests.api.prometheus_data import openmetrics, prometheus_with

pytestmark = pytest.mark.integration

CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Examples per operation and mode: enough to reach every branch of input handling, small enough
# that the whole run takes seconds.
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
# An invalid request may be refused with any of the API's 4xx: a too-long field in a body over
# max_body_bytes is a 413 before it is read (schemathesis's default list lacks 413).
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "409", "413", "415", "422"]
            }
        }
    }
)


@pytest.fixture
def vercel_hook(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The demo's fake Vercel serving one deploy hook (web, production, main); the API's
    deploy_hooks config for it. POST /deployments then reaches Vercel, not only its checks."""
    secrets = tmp_path / "vercel-secrets"
    secrets.mkdir()
    (secrets / "vercel_api_token").write_text("schemathesis-vercel-token\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/integrations/deploy/prj_schemathesis/schemathesisHook"
    (secrets / "vercel_deploy_hook_url").write_text(url + "\n")
    argv = python_argv(
        "fakes.vercel", "--listen", f"127.0.0.1:{port}", "--secrets-dir", str(secrets)
    )
    proc = spawn(argv, tmp_path / "vercel.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/healthy", proc=proc, timeout=20)
        yield {
            "hooks": [
                {
                    "project": "web",
                    "environment": "production",
                    "git_branch": "main",
                    "hook_url_file": str(secrets / "vercel_deploy_hook_url"),
                }
            ]
        }
    finally:
        stop(proc)


def _recent_samples() -> str:
    """An hour of a few recording rules' samples, so /metrics and /costs compute real values
    (a Prometheus that does not answer would be a 503, which this test counts as a failure)."""
    now = time.time()
    points = [(now - 3600 + 30 * k, 1.0 + k % 7) for k in range(118)]
    return openmetrics(
        [
            ("project:vercel_requests:rate5m", {"project": "web"}, points),
            ("target:uptime_probe_errors:ratio_rate5m", {"target": "web"}, points),
            ("supabase_active_users", {"job": "supabase", "window": "30d"}, points),
        ]
    )


@pytest.fixture
def served_prometheus(tmp_path: Path) -> Iterator[str]:
    with prometheus_with(_recent_samples(), tmp_path / "prometheus") as url:
        yield url


@pytest.fixture
def served_api(
    seeded: tuple[str, Any],
    alertmanager: str,
    tmp_path: Path,
    vercel_hook: dict[str, Any],
    served_prometheus: str,
) -> Iterator[str]:
    dsn, _ = seeded
    # With PagerDuty webhooks configured: generated deliveries are unsigned (401), not 404.
    _, _, path = write_config(
        tmp_path,
        database={"conninfo": dsn},
        alertmanager_url=alertmanager,
        deploy_hooks=vercel_hook,
        prometheus_url=served_prometheus,
        # The document's example window is in 2099 (an example must stay in the future); the
        # default max_ahead (366 days) would refuse it.
        maintenance={"max_ahead": "36600d"},
        # A target (the documented example asks it a backup: 202, then 409 while it waits) and
        # a restore target, so generated plans and restores reach the database.
        backups={
            "targets": [{"name": "wsinfra"}],
            "location": str(tmp_path / "backups"),
            "restore_targets": ["drill-restore"],
        },
        **pagerduty_config(tmp_path),
    )
    port = free_port()
    argv = python_argv(
        "api", "serve", "--config.file", str(path), "--web.listen-address", f"127.0.0.1:{port}"
    )
    proc = spawn(argv, tmp_path / "api.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", proc=proc, timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        log = (tmp_path / "api.log").read_text()
        assert "Traceback" not in log, log[-3000:]


def _run(
    op: Any,
    mode: GenerationMode,
    examples: int,
    checks: list[Any],
    base_url: str,
    headers: dict[str, str],
) -> int:
    """Generate up to `examples` cases of one operation, call and check each; how many ran."""
    calls = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def call(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=checks)
        calls.append(1)

    call()
    return len(calls)


def test_every_operation_answers_as_its_schema_says(served_api: str) -> None:
    schema = schemathesis.openapi.from_url(
        f"{served_api}/api/infrastructure/openapi.json", config=CONFIG
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every documented operation but the document itself (schemathesis skips the schema's
    # own URL; test_openapi.py checks it is served).
    assert {op.label for op in operations} == {
        "GET /api/infrastructure/health",
        "GET /api/infrastructure/alerts",
        "POST /api/infrastructure/alerts",
        "PUT /api/infrastructure/alerts",
        "GET /api/infrastructure/deployments",
        "POST /api/infrastructure/deployments",
        "GET /api/infrastructure/metrics",
        "GET /api/infrastructure/costs",
        "POST /api/infrastructure/webhooks/pagerduty",
        "GET /api/infrastructure/maintenance",
        "POST /api/infrastructure/maintenance",
        "DELETE /api/infrastructure/maintenance/{id}",
        "GET /api/infrastructure/backups",
        "POST /api/infrastructure/backups",
        "POST /api/infrastructure/disaster-recovery",
        "GET /api/infrastructure/disaster-recovery/{id}",
        "GET /metrics",
        "GET /-/healthy",
        "GET /-/ready",
    }
    admin = as_user("admin")
    ran: dict[str, int] = {}
    for op in operations:
        secured = op.definition.raw.get("security") != []
        takes_input = bool(op.body) or bool(list(op.query))
        for mode, examples in EXAMPLES.items():
            if mode is GenerationMode.NEGATIVE and not takes_input:
                continue  # nothing to make invalid
            checks = list(CONFORMANCE)
            if mode is GenerationMode.NEGATIVE:
                checks.append(negative_data_rejection)
            elif secured:
                checks.append(ignored_auth)

            ran[op.label] = ran.get(op.label, 0) + _run(
                op, mode, examples, checks, served_api, admin
            )
    assert set(ran) == {op.label for op in operations}
    # The generated requests got through to the database and Alertmanager, not only to the
    # input checks: incidents were posted, unknown ids were looked up, bad input refused.
    answered = _answered(served_api)
    for route, method, code in (
        ("/api/infrastructure/alerts", "GET", "200"),
        ("/api/infrastructure/alerts", "POST", "202"),
        ("/api/infrastructure/alerts", "POST", "422"),
        ("/api/infrastructure/alerts", "PUT", "404"),
        ("/api/infrastructure/alerts", "PUT", "422"),
        ("/api/infrastructure/deployments", "GET", "200"),
        ("/api/infrastructure/deployments", "GET", "422"),
        # The documented example deploys through the fake Vercel's hook; generated branches
        # have none.
        ("/api/infrastructure/deployments", "POST", "202"),
        ("/api/infrastructure/deployments", "POST", "422"),
        # Generated filters reach Prometheus (200) or are refused (422).
        ("/api/infrastructure/metrics", "GET", "200"),
        ("/api/infrastructure/metrics", "GET", "422"),
        ("/api/infrastructure/costs", "GET", "200"),
        # Generated deliveries carry no valid X-PagerDuty-Signature: refused before parsing.
        ("/api/infrastructure/webhooks/pagerduty", "POST", "401"),
        # The documented example window is made (201); generated ones are refused with a reason.
        ("/api/infrastructure/maintenance", "GET", "200"),
        ("/api/infrastructure/maintenance", "POST", "201"),
        ("/api/infrastructure/maintenance", "POST", "422"),
        ("/api/infrastructure/maintenance/{id}", "DELETE", "404"),
        # The documented example is requested (202) and then waits (409); the list answers.
        ("/api/infrastructure/backups", "GET", "200"),
        ("/api/infrastructure/backups", "GET", "422"),
        ("/api/infrastructure/backups", "POST", "202"),
        ("/api/infrastructure/backups", "POST", "409"),
        ("/api/infrastructure/backups", "POST", "422"),
        # The documented example plans a failover; generated plans are refused with a reason.
        ("/api/infrastructure/disaster-recovery", "POST", "200"),
        ("/api/infrastructure/disaster-recovery", "POST", "422"),
        ("/api/infrastructure/disaster-recovery/{id}", "GET", "404"),
    ):
        assert answered.get((route, method, code), 0) > 0, (route, method, code, answered)
    # No 5xx from any operation. /-/ready answers 503 by design until the machine users are
    # set up (the fixture's own readiness poll may see one): not an operation's failure.
    assert not any(code.startswith("5") for route, _, code in answered if route != "/-/ready"), (
        answered
    )


def _answered(base_url: str) -> dict[tuple[str, str, str], float]:
    """api_requests_total by (route, method, code), read from the API's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as resp:  # noqa: S310
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "api_requests":
            for sample in family.samples:
                labels = sample.labels
                out[(labels["route"], labels["method"], labels["code"])] = sample.value
    return out
