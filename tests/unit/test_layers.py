"""The dependency rule: the core is pure, the scheduler never touches pickle."""

import ast
import pathlib

import trioflow

ROOT = pathlib.Path(trioflow.__file__).parent


def imports_of(path: pathlib.Path) -> set[str]:
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
