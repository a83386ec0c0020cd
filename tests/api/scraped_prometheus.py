"""A real Prometheus scraping a target whose exposition the test sets: the recording-rule series,
`ALERTS` and the exporters' `<ns>_up` exactly as the test needs them, so that the API's own
PromQL runs on a real Prometheus and the expected answers are known."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from compose.processes import free_port, prometheus_argv, spawn, stop, wait_ready
from tests.conftest import binary


class Exposition:
    """The target's /metrics body; `set` swaps it whole."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._text = ""

    def set(self, text: str) -> None:
        with self._lock:
            self._text = text.strip() + "\n"

    def get(self) -> str:
        with self._lock:
            return self._text


class ScrapedPrometheus:
    def __init__(self, url: str, exposition: Exposition) -> None:
        self.url = url
        self.exposition = exposition

    def query(self, promql: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=5) as resp:  # noqa: S310 - loopback
            return list(json.load(resp)["data"]["result"])

    def show(self, text: str, *, check: str, timeout: float = 20.0) -> None:
        """Serve `text` and wait until Prometheus has scraped it: `check`, a PromQL expression
        true only for the new exposition, returns a sample."""
        self.exposition.set(text)
        deadline = time.monotonic() + timeout
        while not self.query(check):
            assert time.monotonic() < deadline, f"Prometheus never showed {check}"
            time.sleep(0.1)


def scraped_prometheus(home: Path) -> Iterator[ScrapedPrometheus]:
    binary("prometheus")
    exposition = Exposition()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exposition.get().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = home / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: fixture\n"
        # The exposition sets job= itself (the API's queries select job="uptime").
        "    honor_labels: true\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{server.server_port}']}}]\n"
    )
    port = free_port()
    proc = spawn(prometheus_argv(config, port, home / "data"), home / "prometheus.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", proc=proc)
        yield ScrapedPrometheus(f"http://127.0.0.1:{port}", exposition)
    finally:
        stop(proc)
        server.shutdown()
        server.server_close()
