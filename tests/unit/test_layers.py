"""The dependency rule, checked from the source (docs/architecture.md, "Layers").

* Each module imports only from its own layer or below, counting every import: at the
  top, inside functions and under ``TYPE_CHECKING``.
* No import cycle among trioflow's modules.
* No trioflow module is imported inside a function, except in ``cli/`` (start-up
  time) and ``testing/`` (Hypothesis is optional there).
* The core is pure; the scheduler never touches pickle.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

import trioflow

ROOT = pathlib.Path(trioflow.__file__).parent

#: module name prefix -> layer; the longest matching prefix wins
LAYERS = {
    "trioflow.errors": 0,
    "trioflow.config": 0,
    "trioflow.lazy_exports": 0,
    "trioflow.versions": 0,
    "trioflow.protocol": 1,
    "trioflow.serialize": 1,
    "trioflow.core": 2,
    "trioflow.engine": 3,
    "trioflow.net": 4,
    "trioflow.dashboard": 4,  # served by the scheduler process beside net/scheduler_server
    "trioflow.cluster": 5,
    "trioflow.nanny": 5,
    "trioflow.client": 6,
    "trioflow.client_api": 6,
    "trioflow.client_link": 6,
    "trioflow.client_runs": 6,
    "trioflow.task_options": 6,
    "trioflow.dask_integration": 6,
    "trioflow.cluster_queries": 6,
    "trioflow.datasets": 6,
    "trioflow.metadata": 6,
    "trioflow.plugins": 6,
    "trioflow.executor": 6,
    "trioflow.local_cluster": 6,
    "trioflow.asyncio_client": 6,
    "trioflow.in_task": 7,
    "trioflow.delayed": 7,
    "trioflow.run": 7,
    "trioflow.primitives": 7,
    "trioflow.progress": 7,
    "trioflow.task_stream": 7,
    "trioflow.cli": 8,
    "trioflow.testing": 8,
    "trioflow": 8,  # the package's __init__: public re-exports only
}

#: where a function-local import of a trioflow module is allowed, and why
LOCAL_IMPORTS_ALLOWED = ("trioflow.cli", "trioflow.testing")



def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


MODULES = all_modules()


def layer_of(name: str) -> int:
    best = max((prefix for prefix in LAYERS if name == prefix or name.startswith(prefix + ".")),
               key=len)
    return LAYERS[best]


def _resolve(name: str) -> str | None:
    """The trioflow module ``name`` refers to (a module, or an attribute of one)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def trioflow_imports(path: pathlib.Path) -> Iterator[tuple[str, int, bool]]:
    """(module imported, line, inside a function) for each import of a trioflow module."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    local_lines: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    local_lines.add(node.lineno)
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*pkg, base]) if base else ".".join(pkg)
            # `from pkg import sub` imports the submodule; other names come from pkg
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.append(full if full in MODULES else base)
        for target in targets:
            resolved = _resolve(target) if target.startswith("trioflow") else None
            if resolved is not None:
                yield resolved, node.lineno, node.lineno in local_lines


def graph() -> dict[str, set[str]]:
    return {name: {m for m, _, _ in trioflow_imports(path) if m != name}
            for name, path in MODULES.items()}


def test_layer_map_covers_every_module():
    for name in MODULES:
        assert layer_of(name) in range(9), name


def test_imports_only_go_down():
    wrong = []
    for name, path in MODULES.items():
        for target, line, _ in trioflow_imports(path):
            if layer_of(target) > layer_of(name):
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target} "
                             f"(layer {layer_of(name)} -> {layer_of(target)})")
    assert not wrong, "\n".join(wrong)


def test_the_scheduler_shell_and_the_worker_shell_stay_apart():
    """The scheduler's shell needs neither the engine nor the worker's modules."""
    path = MODULES["trioflow.net.scheduler_server"]
    for target, line, _ in trioflow_imports(path):
        assert not target.startswith(("trioflow.engine", "trioflow.net.worker")), (line, target)


def test_the_core_uses_only_the_leaf_layers_and_the_protocol_vocabulary():
    """The core may name messages (``protocol``, ``protocol.messages``, ``protocol.services``), never the codec."""
    allowed = ("trioflow.core", "trioflow.errors", "trioflow.config", "trioflow.lazy_exports")
    for name, path in MODULES.items():
        if layer_of(name) != 2:
            continue
        for target, line, _ in trioflow_imports(path):
            assert target in ("trioflow.protocol", "trioflow.protocol.messages",
                              "trioflow.protocol.services") or any(
                target == a or target.startswith(a + ".") for a in allowed), (name, line, target)


def test_scheduler_handlers_never_import_one_another():
    """Only ``core/scheduler/machine.py`` sees every handler module (h11's Rule 1:
    shared invariants live in ``state``/``ops``, below the handlers)."""
    handlers = {f"trioflow.core.scheduler.{m}"
                for m in ("lifecycle", "peers", "data", "waits", "placement", "deadlock",
                          "coordination", "timeline", "starvation", "explain",
                          "replicas", "restart")}
    edges = graph()
    for name in handlers:
        assert not edges[name] & handlers, (name, edges[name] & handlers)


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module (cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert strongly_connected(graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_function_local_imports_of_trioflow():
    found = []
    for name, path in MODULES.items():
        if name.startswith(LOCAL_IMPORTS_ALLOWED):
            continue
        for target, line, local in trioflow_imports(path):
            if local:
                found.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert not found, "\n".join(found)


def imports_of(path: pathlib.Path) -> set[str]:
    """Every module name an import statement in ``path`` mentions (third-party too)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # relative: resolve against the file's package
                pkg = path.relative_to(ROOT.parent).with_suffix("").parts[: -node.level]
                mod = ".".join([*pkg, mod]) if mod else ".".join(pkg)
                found |= {f"{mod}.{a.name}" for a in node.names}
            found.add(mod)
    return found


def test_core_is_sans_io():
    forbidden = ("trio", "trio_websocket", "cloudpickle", "pickle", "socket", "time",
                 "random", "trioflow.serialize", "trioflow.net", "trioflow.protocol.codec")
    for path in (ROOT / "core").rglob("*.py"):
        for mod in imports_of(path):
            assert not any(mod == f or mod.startswith(f + ".") for f in forbidden), (path, mod)


def test_scheduler_never_unpickles():
    for path in [ROOT / "net" / "scheduler_server.py", *(ROOT / "core").rglob("*.py"),
                 *(ROOT / "protocol").glob("*.py")]:
        for mod in imports_of(path):
            assert "pickle" not in mod and not mod.endswith("serialize"), (path, mod)
