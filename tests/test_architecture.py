"""The package's import graph, read with ast: no cycle, and the source folders stay apart.

A cycle makes one module load another half-initialised, and it was how every worker process
came to load the whole CLI. The source folders import only generic modules and their own
files, so a folder can be copied to start a new source (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from ingester.model import GOOGLE_HEALTH, SYNTHETIC, TAKEOUT
from ingester.sources import REGISTRY, UnknownSource, build_source

PACKAGE = Path(__file__).resolve().parent.parent / "ingestion" / "ingester"
# The generic modules that sit above the sources and drive them: a source never imports them.
DRIVERS = {"cli", "workers", "pipeline", "monitoring", "report", "adherence", "cohort",
           "dashboard", "takeout_import"}


def module_name(path: Path) -> str:
    parts = ["ingester", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports, at any depth of its code."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = [f"{target}.{alias.name}" for alias in node.names]
            # `from . import transform` loads the module transform, not the package's names
            named_only_modules = all(m in modules for m in submodules)
            candidates = submodules if named_only_modules else [target, *submodules]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in modules and c != name}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "ingester.sources.google_health.source" in graph  # the walk saw the folders
    assert find_cycle(graph) is None


def test_sources_never_import_what_drives_them():
    for module, imported in import_graph().items():
        if module.startswith("ingester.sources"):
            up = {m for m in imported if m.split(".")[-1] in DRIVERS and m.count(".") == 1}
            assert not up, f"{module} imports {sorted(up)}"


def test_source_folders_do_not_import_each_other():
    for module, imported in import_graph().items():
        parts = module.split(".")
        if len(parts) > 2 and parts[1] == "sources" and parts[2] in REGISTRY.values():
            others = {m for m in imported if m.startswith("ingester.sources.")
                      and m.split(".")[2] != parts[2]}
            assert not others, f"{module} imports {sorted(others)}"


def test_the_registry_names_a_folder_for_each_kind():
    assert REGISTRY == {SYNTHETIC: "synthetic", GOOGLE_HEALTH: "google_health",
                        TAKEOUT: "takeout"}
    for folder in REGISTRY.values():
        assert (PACKAGE / "sources" / folder / "__init__.py").is_file()


def test_an_unknown_kind_is_named_in_the_error():
    from ingester.config import Settings

    with pytest.raises(UnknownSource, match="'oura'.*google_health, synthetic, takeout"):
        build_source("oura", Settings())
