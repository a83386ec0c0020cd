"""The landing page every exporter serves escapes what it lists (names come from configs)."""

from __future__ import annotations

from common.web import landing_page


def test_landing_page_links_metrics_and_escapes_items() -> None:
    resp = landing_page("billing", [("Sources:", ["<script>x</script>", "vercel"]), ("Empty", [])])
    text = resp.text or ""
    assert resp.content_type == "text/html"
    assert "<h1>wsinfra billing exporter</h1>" in text
    assert "<a href='/metrics'>Metrics</a>" in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text
    assert "<script>" not in text
    assert "<p>Empty</p><ul>" not in text  # a section without items has no list
