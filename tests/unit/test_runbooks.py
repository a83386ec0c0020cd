"""Every alert's runbook_url names a page in runbooks/ and a heading on it."""

from __future__ import annotations

import re

import yaml

from alert_rules.build import GENERATED
from alert_rules.config import load_rules
from tests.conftest import ROOT

RUNBOOKS = ROOT / "runbooks"


def anchors(markdown: str) -> set[str]:
    """GitHub-style heading anchors: lower-case, punctuation dropped, spaces to dashes."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def test_every_runbook_url_resolves_to_a_page_and_heading() -> None:
    base = load_rules().runbook_base_url + "/"
    checked = 0
    problems = []
    for path in GENERATED.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                url = rule["annotations"]["runbook_url"]
                assert url.startswith(base), url
                page, _, anchor = url.removeprefix(base).partition("#")
                file = RUNBOOKS / page
                if not file.is_file():
                    problems.append(f"{rule['alert']}: no page {file}")
                    continue
                text = file.read_text()
                if anchor not in anchors(text):
                    problems.append(f"{rule['alert']}: no heading #{anchor} in {file.name}")
                for section in ("meaning", "confirm", "remediate"):
                    if section not in anchors(text):
                        problems.append(f"{file.name}: missing section '## {section.title()}'")
                checked += 1
    assert checked >= 10
    assert not problems, "\n".join(problems)


def test_links_between_runbooks_resolve() -> None:
    for page in RUNBOOKS.glob("*.md"):
        for target, anchor in re.findall(r"\]\(([A-Za-z]+\.md)#([a-z0-9-]+)\)", page.read_text()):
            assert (RUNBOOKS / target).is_file(), f"{page.name} links to missing {target}"
            assert anchor in anchors((RUNBOOKS / target).read_text()), (
                f"{page.name} → {target}#{anchor}"
            )


def test_links_in_readme_and_docs_resolve() -> None:
    """Every relative link in README.md and docs/ names a file, and a heading on it for #anchors."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert len(pages) > 1, "docs/ is missing"
    problems = []
    for page in pages:
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)  # not code blocks
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)} → {target}"
            if not file.exists():
                problems.append(f"{where}: no such file")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
                problems.append(f"{where}: no heading #{anchor}")
    assert not problems, "\n".join(problems)
