"""The README's "Monitoring the real platform", followed literally by a new user, with local
stand-ins only: in a copy of the repository, every line of that block runs as written through
bash (the README's Slack URL swapped for the local sink's, `$EDITOR` a script that writes one
target: a local HTTP server); then the target breaks and the critical message must reach the
sink's Slack, with its runbook link; then `./wsinfra down`. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compose.database import drop_database
from compose.processes import free_port, spawn, stop, wait_ready
from compose.stack import isolated_env
from tests.conftest import ROOT, binary
from tests.integration.stack import get_json, repository_copy, wait_for

pytestmark = pytest.mark.integration

README_SLACK_URL = "https://hooks.slack.com/services/…"


def readme_steps() -> list[str]:
    """The shell lines of the README's real-mode block, comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Monitoring the real platform", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's real-mode section has no sh block"
    return [ln for ln in block[1].splitlines() if ln.strip() and not ln.startswith("#")]


class Target(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<title>ok</title>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def target() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_readme_real_mode_steps_page_slack_when_the_target_breaks(
    tmp_path: Path, target: http.server.ThreadingHTTPServer
) -> None:
    for name in ("prometheus", "amtool", "promtool"):
        binary(name)
    binary("prometheus-alertmanager", "alertmanager")
    repo = repository_copy(tmp_path / "wsinfra")
    env, _ = isolated_env(tmp_path / "ports")
    for own in ("WSINFRA_CONFIG_DIR", "WSINFRA_RUN_DIR"):  # the README's defaults: the copy's
        env.pop(own)

    # The Slack stand-in: the sink, accepting one webhook URL (read from a file, as Alertmanager).
    sink_port = free_port()
    hook = f"http://127.0.0.1:{sink_port}/services/T0README/B0README/readme-webhook-token"
    (tmp_path / "hook").write_text(hook + "\n")
    sink = spawn(
        [
            sys.executable,
            "-m",
            "fakes.sink",
            "--listen",
            f"127.0.0.1:{sink_port}",
            "--slack-webhook-url-file",
            f"{tmp_path / 'hook'}=#ops-alerts",
        ],
        tmp_path / "sink.log",
    )
    # $EDITOR: writes the one target the user would type.
    url = f"http://127.0.0.1:{target.server_address[1]}/"
    editor = tmp_path / "editor"
    editor.write_text(
        "#!/bin/sh\ncat > \"$1\" <<'EOF'\n"
        "interval: 5s\ntimeout: 2s\nconfirm_delay: 1s\n"
        f"targets:\n  - name: readme-home\n    service: web\n    http:\n      url: {url}\n"
        "EOF\n"
    )
    editor.chmod(0o755)
    env["EDITOR"] = str(editor)

    def sh(line: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", line], cwd=repo, env=env, capture_output=True, text=True, timeout=300
        )

    steps = readme_steps()
    assert any(README_SLACK_URL in s for s in steps), "the README no longer shows the Slack step"
    started = False
    try:
        wait_ready(f"http://127.0.0.1:{sink_port}/api/messages", proc=sink)
        for step in steps:
            res = sh(step.replace(README_SLACK_URL, hook))
            logs = "".join(
                f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                for p in sorted((repo / ".run" / "logs").glob("*.log"))
            )
            assert res.returncode == 0, f"`{step}` failed:\n{res.stdout}{res.stderr}{logs}"
            if "./wsinfra init" in step:
                # A new user's first check: the placeholder is reported before it is filled.
                assert "slack_webhook_url (a placeholder)" in res.stdout
            if "./wsinfra up" in step:
                started = True
                assert "DEMO" not in res.stdout, res.stdout
        assert not (repo / "config" / "local" / "vercel.yaml").exists()  # only what was asked

        def messages() -> list[dict[str, Any]]:
            return list(get_json(f"http://127.0.0.1:{sink_port}/api/messages")["slack"])

        # The platform breaks: its port closes.
        target.shutdown()
        target.server_close()
        critical = wait_for(
            "the critical Slack message",
            lambda: [m for m in messages() if m["text"].startswith("[CRITICAL] UptimeTargetDown")],
            timeout=120,
        )
        text = critical[0]["text"]
        assert critical[0]["channel"] == "#ops-alerts"
        assert "readme-home" in text
        assert "/runbooks/UptimeTargetDown.md#uptimetargetdown" in text
    finally:
        if started:
            down = sh("./wsinfra down")
            assert down.returncode == 0, down.stderr
        stop(sink)
        drop_database(env["WSINFRA_RECORDER_DB"], None)
    assert sh("./wsinfra status").returncode == 3, "processes survived `down`"
