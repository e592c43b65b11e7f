"""The core's import graph: no cycle, counting every kind of import, and no local imports.

Every ``import`` statement counts: top-level, inside a function, and under
``if TYPE_CHECKING``. ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module (``from . import ops``), else to ``pkg``. Importing a submodule is not counted as
importing its parent package (Python runs the parent's ``__init__`` first, but that is
not a dependency the importing module chose).
"""

from __future__ import annotations

import ast
import pathlib

import trioflow

ROOT = pathlib.Path(trioflow.__file__).parent
CORE = ROOT / "core"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def edges_of(path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """trioflow modules that ``path`` imports, any kind of import."""
    is_pkg = path.name == "__init__.py"
    here = module_name(path).split(".")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = here if is_pkg else here[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base]) if base else ".".join(pkg)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def local_imports(path: pathlib.Path) -> list[int]:
    """Lines of trioflow imports inside a function body."""
    lines = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.level or (
                        node.module or "").startswith("trioflow")):
                    lines.append(node.lineno)
                elif isinstance(node, ast.Import) and any(
                        a.name.startswith("trioflow") for a in node.names):
                    lines.append(node.lineno)
    return lines


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1 or v in graph.get(v, ()):
                found.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def core_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {module_name(p): edges_of(p, modules) for p in CORE.rglob("*.py")}


def test_core_has_no_import_cycle():
    assert cycles(core_graph()) == []


def test_core_imports_only_errors_and_protocol_from_trioflow():
    allowed = ("trioflow.core", "trioflow.errors", "trioflow.protocol")
    for mod, deps in core_graph().items():
        for dep in deps:
            assert dep == "trioflow.protocol.messages" or dep == "trioflow.protocol" or any(
                dep == a or dep.startswith(a + ".") for a in allowed[:2]), (mod, dep)


def test_scheduler_handlers_never_import_one_another():
    handlers = {f"trioflow.core.scheduler.{m}"
                for m in ("lifecycle", "peers", "data", "waits", "placement", "deadlock")}
    for mod, deps in core_graph().items():
        if mod in handlers:
            assert not deps & handlers, (mod, deps & handlers)


def test_core_has_no_function_local_imports():
    for path in CORE.rglob("*.py"):
        assert local_imports(path) == [], path


def test_the_checker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
