"""The shape of pipeline/: modules small enough to read, and no import cycles.

A cycle is where the next change goes wrong (an import moved to the top breaks start-up, a
function-level import hides a dependency both ways), so every import counts, lazy ones too;
only ``if TYPE_CHECKING:`` blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "pipeline"
# "About 400": a module that grows past this is doing two jobs; split it by concept.
MAX_LINES = 420


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Project modules that ``module`` imports (a submodule rather than its package where
    ``from package import submodule`` names one)."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != PACKAGE:
                continue
            subs = {f"{base}.{a.name}" for a in node.names} & known
            found.update(subs or {base})
            if len(subs) < len(node.names):
                found.add(base)
        stack.extend(ast.iter_child_nodes(node))
    return {m for m in found if m in known}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports, for every module of ``root/pipeline``."""
    files = {_module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}
    known = set(files)
    return {
        name: _imports(ast.parse(path.read_text()), name, path.name == "__init__.py", known)
        - {name}
        for name, path in files.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles_in_the_package() -> None:
    cycles = find_cycles(import_graph(REPO))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_module_over_the_line_budget() -> None:
    long = {
        str(p.relative_to(REPO)): n
        for p in sorted((REPO / PACKAGE).rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split by concept): {long}"


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("b_source", "cyclic"),
    [
        ("def g():\n    from pipeline.sub import a\n", True),  # a lazy import still counts
        ("from . import a\n", True),  # relative
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipeline.sub import a\n",
            False,
        ),
        ("import os\n", False),
    ],
)
def test_the_checker_sees_cycles(tmp_path: Path, b_source: str, cyclic: bool) -> None:
    _write(tmp_path, "pipeline/__init__.py", "")
    _write(tmp_path, "pipeline/sub/__init__.py", "")
    _write(tmp_path, "pipeline/sub/a.py", "from pipeline.sub.b import f\n")
    _write(tmp_path, "pipeline/sub/b.py", b_source)
    graph = import_graph(tmp_path)
    assert graph["pipeline.sub.a"] == {"pipeline.sub.b"}
    assert bool(find_cycles(graph)) is cyclic
