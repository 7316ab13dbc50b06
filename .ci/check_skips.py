#!/usr/bin/env python3
"""CI's verdict on a JUnit report: fail if no test ran, or if any test skipped that the
README's "Skips CI allows" section does not list with its reason.

    .ci/check_skips.py JUNIT_XML [README]

A skip hides whatever the skipped test would have caught, so CI treats it as a failure
unless someone wrote down why CI may do without that test. The list lives in one place, the
README's table, which this script parses: rows `| `NODE_ID` | reason |`, where NODE_ID is
a pytest node id (tests/test_x.py::test_name[param]) in which `*` stands for any text. An
xfail is reported as a skip too, and treated alike. Standard library only: it runs with the
system's python3 after `make test`.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "### Skips CI allows"
ALLOWED_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*([^|]*?)\s*\|\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Skip:
    node_id: str
    reason: str


def allowed_skips(readme: str) -> dict[str, str]:
    """NODE_ID pattern -> reason, from the README section's table."""
    start = readme.find(f"\n{SECTION}\n")
    if start < 0:
        raise SystemExit(f".ci/check_skips.py: the README has no {SECTION!r} section")
    following = re.compile(r"\n#{1,3} ").search(readme, start + len(SECTION) + 2)
    section = readme[start : following.start() if following else None]
    allowed = {}
    for pattern, reason in ALLOWED_ROW.findall(section):
        if not reason:
            raise SystemExit(f".ci/check_skips.py: {pattern} is allowed to skip with no reason")
        allowed[pattern] = reason
    return allowed


def node_id(classname: str, name: str, root: Path = ROOT) -> str:
    """pytest's node id from JUnit's dotted classname: the longest prefix that names a file
    under root is the module, the rest are classes."""
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = "/".join(parts[:cut]) + ".py"
        if (root / path).is_file():
            return "::".join([path, *parts[cut:], name])
    return "::".join([classname, name])


def results(report: Path, root: Path = ROOT) -> tuple[int, list[Skip]]:
    """(how many tests ran, the skipped ones)."""
    tree = ET.parse(report).getroot()
    ran, skips = 0, []
    for case in tree.iter("testcase"):
        skipped = case.find("skipped")
        if skipped is None:
            ran += 1
            continue
        reason = skipped.get("message") or (skipped.text or "").strip()
        skips.append(Skip(node_id(case.get("classname", ""), case.get("name", ""), root),
                          reason))
    return ran, skips


def matches(node: str, pattern: str) -> bool:
    """`*` is any text; everything else, the brackets of a parameter included, is itself."""
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), node) is not None


def verdict(ran: int, skips: list[Skip], allowed: dict[str, str]) -> list[str]:
    """The problems, one line each; empty when CI may pass."""
    problems = []
    if ran <= 0:
        problems.append("make test passed but ran no test")
    for skip in skips:
        if not any(matches(skip.node_id, pattern) for pattern in allowed):
            problems.append(f"skipped, and not in the README's {SECTION!r}: "
                            f"{skip.node_id} ({skip.reason})")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    readme = Path(argv[2]) if len(argv) == 3 else ROOT / "README.md"
    ran, skips = results(Path(argv[1]))
    problems = verdict(ran, skips, allowed_skips(readme.read_text()))
    for problem in problems:
        print(f".ci/check_skips.py: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f".ci/check_skips.py: {ran} tests ran, {len(skips)} allowed skips")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
