"""The runbooks as web pages: every alert's `runbook_url` opens one of these wherever the stack
runs, so the link in a Slack message, a page or a dashboard is never a 404 on a placeholder.

The pages are rendered once, at start, from `runbooks/*.md` (Python-Markdown; the toc extension
gives each heading the id GitHub would, so `UptimeTargetDown.md#uptimetargetdown` lands on the
heading here as it does on GitHub). Only names read from that directory are served: the URL is
looked up in a dict, never joined to a path.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import markdown
from aiohttp import web

log = logging.getLogger(__name__)

# The repository's runbooks/ (the image copies it to /app/runbooks beside the code).
DEFAULT_DIRECTORY = Path(__file__).resolve().parents[1] / "runbooks"
PREFIX = "/runbooks"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}\.md")

# Pages are our own Markdown, but the answer still allows nothing to run or load from elsewhere.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
_STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}"
    "code,pre{background:#f4f4f4;font-size:90%}pre{padding:.6rem;overflow-x:auto}"
    "nav{font-size:90%;margin-bottom:1rem}"
)


@dataclass(frozen=True)
class Page:
    title: str
    html: str


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} · wsinfra runbook</title><style>{_STYLE}</style></head>"
        f'<body><nav><a href="{PREFIX}/">All runbooks</a></nav>{body}</body></html>'
    )


def _title(text: str, fallback: str) -> str:
    m = re.search(r"^#\s+(.+)$", text, re.M)
    return m.group(1).strip() if m else fallback


def render(text: str) -> str:
    """One runbook's Markdown as HTML, headings carrying GitHub's anchors."""
    return markdown.markdown(text, extensions=["toc", "fenced_code", "tables"])


def load(directory: Path) -> dict[str, Page]:
    """Every runbook in `directory`, rendered; an absent directory serves none (and says so)."""
    if not directory.is_dir():
        log.warning("no runbooks directory at %s: /runbooks/ serves no pages", directory)
        return {}
    pages = {}
    root = directory.resolve()
    for path in sorted(directory.glob("*.md")):
        if not _NAME.fullmatch(path.name):
            continue
        # A symlink out of the directory would serve that file (say /etc/passwd) as a page, and
        # one unreadable entry (a directory, bad UTF-8, a dangling link) must not stop the
        # recorder from starting: skip either, saying which.
        if path.resolve().parent != root or not path.is_file():
            log.warning("runbook %s is not a file inside %s: not served", path.name, directory)
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("runbook %s is unreadable (%s): not served", path.name, exc)
            continue
        title = _title(text, path.stem)
        pages[path.name] = Page(title, _document(title, render(text)))
    return pages


def _index(pages: dict[str, Page]) -> str:
    items = "".join(
        f'<li><a href="{PREFIX}/{html.escape(name)}">{html.escape(page.title)}</a></li>'
        for name, page in pages.items()
    )
    empty = "" if pages else "<p>No runbooks are installed beside this service.</p>"
    return _document("Runbooks", f"<h1>Runbooks</h1>{empty}<ul>{items}</ul>")


def add_routes(app: web.Application, directory: Path = DEFAULT_DIRECTORY) -> int:
    """GET /runbooks/ (the index) and /runbooks/<Alert>.md (one page) on `app`; returns how
    many pages it serves."""
    pages = load(directory)
    index = _index(pages)

    async def show_index(_: web.Request) -> web.Response:
        return web.Response(text=index, content_type="text/html", headers=_HEADERS)

    async def to_index(_: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"{PREFIX}/")

    async def show(request: web.Request) -> web.Response:
        page = pages.get(request.match_info["name"])
        if page is None:
            return web.Response(
                status=404,
                text=f"no runbook named {request.match_info['name'][:128]!r}; "
                f"the list is at {PREFIX}/\n",
                headers={"X-Content-Type-Options": "nosniff"},
            )
        return web.Response(text=page.html, content_type="text/html", headers=_HEADERS)

    app.router.add_get(PREFIX, to_index)
    app.router.add_get(f"{PREFIX}/", show_index)
    app.router.add_get(PREFIX + "/{name}", show)
    return len(pages)
