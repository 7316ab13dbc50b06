"""The docs say what the code does, and their links lead somewhere.

The reference tables are checked against the code (a metric or a setting added there
without its row here fails), and every relative link of README.md and docs/*.md must name a
file that exists and, with #anchor, a heading (or <a id>) of that file.
"""

import re
from pathlib import Path

import pytest
from ingester.config import VARIABLES
from ingester.metrics import METRICS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def section(page: Path, title: str) -> str:
    text = page.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_the_metric_table_lists_every_metric_with_its_unit():
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| ([^|]+) \|",
                      section(DOCS / "metrics.md", "The metric vocabulary"), re.M)
    assert {name: unit.strip() for name, unit in rows} == {
        name: metric.unit for name, metric in METRICS.items()
    }


def test_every_setting_is_documented_in_the_reference_and_env_example():
    example = (ROOT / ".env.example").read_text()
    configuration = section(DOCS / "configuration.md", "Configuration")
    for variable in VARIABLES:
        assert f"`{variable}`" in configuration, variable
        assert re.search(rf"^{variable}=", example, re.M), variable


# --- links -------------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def prose(text: str) -> str:
    """The text without code: a link shown in a code block is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    found: set[str] = set(EXPLICIT_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        found.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return found


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto:


def test_the_slug_is_githubs():
    assert slug("Before you plan: Google's limits") == "before-you-plan-googles-limits"
    assert slug("Workers at scale (`make bench-scale`)") == "workers-at-scale-make-bench-scale"
    assert slug("2. Get a participant's consent") == "2-get-a-participants-consent"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.name}")
    assert not broken, broken


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [gone](#nowhere) [file](missing.md)\n"
                    "`[code](#not-a-link)`\n")
    assert links(page) == ["#title", "#nowhere", "missing.md"]
    assert anchors(page) == {"title"}
