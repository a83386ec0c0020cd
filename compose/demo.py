"""What the demo probes and where its notifications go: the stand-in platform and the local sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# Fake credentials the local sink accepts; they open nothing anywhere else.
DEMO_SLACK_PATH = "T0DEMO/B0DEMO/demo-webhook-token"
DEMO_SLACK_CHANNEL = "#ops-alerts"
DEMO_PAGER_KEY = "demo0000000000000000000000000000"  # 32 characters, as PagerDuty requires
DEMO_RECORDER_TOKEN = "demo-recorder-token"  # noqa: S105 - demo-only, opens nothing


def demo_uptime_config(
    base_url: str, *, interval: str = "5s", timeout: str = "4500ms"
) -> dict[str, Any]:
    """Targets on the stand-in platform: pages, an API health check, a redirect, a TCP port."""
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
        ],
    }


def write_demo_secrets(secrets_dir: Path, sink_url: str) -> None:
    secrets_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "slack_webhook_url": f"{sink_url.rstrip('/')}/services/{DEMO_SLACK_PATH}",
        "pagerduty_routing_key": DEMO_PAGER_KEY,
        "recorder_token": DEMO_RECORDER_TOKEN,
    }
    for name, value in files.items():
        path = secrets_dir / name
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o600)


def sink_args(listen: str) -> list[str]:
    return [
        "--listen",
        listen,
        "--slack-webhook",
        f"{DEMO_SLACK_PATH}={DEMO_SLACK_CHANNEL}",
        "--pager-key",
        DEMO_PAGER_KEY,
    ]


def dump(doc: dict[str, Any], header: str = "") -> str:
    return header + yaml.safe_dump(doc, sort_keys=False)
