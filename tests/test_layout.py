"""The package's shape: no import cycle, layers that only point down, small functions and modules.

Imports are read from the source with ``ast`` (module level and inside functions alike, since a
lazy import is still a dependency), resolved to ``imgclust.*`` modules, and checked as a graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "imgclust"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(current: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str, path: Path) -> set[str]:
    """imgclust modules that module ``name`` imports (explicitly; parents' __init__ are not edges)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(name, is_pkg, node)
            # `from pkg import sub` imports the submodule when there is one, else a name of pkg.
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
        for t in targets:
            while t and t not in MODULES:  # `import imgclust.x.y` -> the deepest known module
                t = t.rpartition(".")[0]
            if t.startswith("imgclust") and t != name:
                out.add(t)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_real_imports():
    # Guards the walker itself: these edges exist in the code.
    assert "imgclust.analyze" in GRAPH["imgclust.api"]
    assert "imgclust.rundir" in GRAPH["imgclust.report.builder"]
    assert "imgclust.pipeline.sources" in GRAPH["imgclust.rundir"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


def test_nothing_imports_the_cli():
    offenders = {m for m, deps in GRAPH.items() if not m.startswith("imgclust.cli")
                 and any(d.startswith("imgclust.cli") for d in deps)}
    assert not offenders


def test_only_the_cli_imports_api():
    """The report and every command depend on rundir and the stages, never on the orchestrator."""
    offenders = {m for m, deps in GRAPH.items() if "imgclust.api" in deps and not m.startswith("imgclust.cli")}
    assert not offenders


@pytest.mark.parametrize("low,high", [
    ("imgclust.pipeline", "imgclust.analyze"), ("imgclust.pipeline", "imgclust.report"),
    ("imgclust.encoders", "imgclust.pipeline"), ("imgclust.cluster", "imgclust.rundir"),
    ("imgclust.rundir", "imgclust.report"), ("imgclust.rundir", "imgclust.analyze"),
    ("imgclust.report", "imgclust.explore"), ("imgclust.report", "imgclust.language"),
])
def test_lower_layers_do_not_import_higher_ones(low, high):
    offenders = {m for m, deps in GRAPH.items() if m.startswith(low) and any(d.startswith(high) for d in deps)}
    assert not offenders


def _long_functions() -> list[str]:
    out = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{name}.{node.name}: {n} lines")
    return out


def test_functions_are_short():
    assert _long_functions() == []


def test_modules_are_small():
    big = [f"{n}: {len(p.read_text().splitlines())} lines" for n, p in MODULES.items()
           if len(p.read_text().splitlines()) > MAX_MODULE_LINES]
    assert big == []
