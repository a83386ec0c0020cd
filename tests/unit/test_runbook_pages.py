"""The runbook pages: every alert's runbook_url, as the generated rules write it, opens a page
with the alert's heading; nothing outside runbooks/ is ever served."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from alert_rules.build import GENERATED
from alert_rules.config import load_rules
from common import runbook_pages


@pytest.fixture
async def client(aiohttp_client) -> TestClient:  # type: ignore[no-untyped-def]
    app = web.Application()
    assert runbook_pages.add_routes(app) >= 50
    return await aiohttp_client(app)  # type: ignore[no-any-return]


def _runbook_urls() -> dict[str, str]:
    urls = {}
    for path in GENERATED.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    urls[rule["alert"]] = rule["annotations"]["runbook_url"]
    return urls


async def test_every_alerts_runbook_url_opens_its_page_at_its_heading(client: TestClient) -> None:
    base = load_rules().runbook_base_url
    urls = _runbook_urls()
    assert len(urls) >= 40
    for alert, url in urls.items():
        path, _, anchor = url.removeprefix(base).partition("#")
        resp = await client.get(runbook_pages.PREFIX + path)
        assert resp.status == 200, (alert, url)
        assert resp.content_type == "text/html"
        text = await resp.text()
        assert f'<h1 id="{anchor}">{alert}</h1>' in text, (alert, url)
        for section in ("meaning", "confirm", "remediate"):
            assert f'id="{section}"' in text, (alert, section)
        assert "script-src" not in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_index_lists_every_page_and_links_between_pages_resolve(client: TestClient) -> None:
    resp = await client.get("/runbooks", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (301, "/runbooks/")
    index = await (await client.get("/runbooks/")).text()
    links = re.findall(r'href="/runbooks/([^"]+)"', index)
    assert sorted(links) == sorted(p.name for p in runbook_pages.DEFAULT_DIRECTORY.glob("*.md"))
    for name in links:
        page = await (await client.get(f"/runbooks/{name}")).text()
        # Relative links between runbooks (Other.md#anchor) resolve under /runbooks/ here.
        for target, anchor in re.findall(r'href="([A-Za-z]+\.md)#([a-z0-9-]+)"', page):
            other = await client.get(f"/runbooks/{target}")
            assert other.status == 200, (name, target)
            assert f'id="{anchor}"' in await other.text(), (name, target, anchor)


@pytest.mark.parametrize(
    "path",
    [
        "/runbooks/NoSuchAlert.md",
        "/runbooks/..%2Fpyproject.toml",
        "/runbooks/%2e%2e%2fREADME.md",
        "/runbooks/../README.md",
        "/runbooks/UptimeTargetDown.md%00",
        "/runbooks/" + "A" * 5000 + ".md",
        "/runbooks/.md",
    ],
)
async def test_unknown_names_and_traversal_are_404_without_content(
    client: TestClient, path: str
) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    text = await resp.text()
    assert "[project]" not in text  # pyproject.toml
    assert "<html" not in text  # no page, not even README's
    assert len(text) < 400


def test_a_runbook_directory_elsewhere_serves_its_pages_and_escapes_names(tmp_path: Path) -> None:
    (tmp_path / "Mine.md").write_text("# Mine\n\n## Meaning\nx\n")
    (tmp_path / "not a name.md").write_text("# skipped\n")
    pages = runbook_pages.load(tmp_path)
    assert list(pages) == ["Mine.md"]
    assert '<h1 id="mine">Mine</h1>' in pages["Mine.md"].html
    assert runbook_pages.load(tmp_path / "absent") == {}


def test_links_out_of_the_directory_and_unreadable_entries_are_skipped_not_fatal(
    tmp_path: Path,
) -> None:
    # One bad entry must neither stop the recorder from starting nor serve a file from elsewhere.
    (tmp_path / "Good.md").write_text("# Good\n")
    (tmp_path / "Binary.md").write_bytes(b"\xff\xfe not utf-8")
    (tmp_path / "Folder.md").mkdir()
    (tmp_path / "Dangling.md").symlink_to(tmp_path / "absent.md")
    secret = tmp_path.parent / f"{tmp_path.name}-secret.md"
    secret.write_text("# Secret\nroot:x:0:0\n")
    (tmp_path / "Outside.md").symlink_to(secret)
    assert list(runbook_pages.load(tmp_path)) == ["Good.md"]
