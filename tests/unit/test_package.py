"""The packages' lazy re-exports (PEP 562): ``trioflow``, ``trioflow.core`` and
``trioflow.cli`` name their public objects at once but import each on first use, so a
node process loads only its own modules (issue 12: start to first result).

The checks that need a fresh interpreter run one (``sys.executable -c``), with nothing
inherited but the interpreter: what a process has imported is the thing under test.
"""

from __future__ import annotations

import ast
import importlib
import json
import pathlib
import subprocess
import sys

import pytest

import trioflow

PACKAGES = ("trioflow", "trioflow.core", "trioflow.cli")


def _type_checking_imports(package: str) -> dict[str, str]:
    """name -> submodule, from the ``if TYPE_CHECKING:`` block of ``package``'s __init__."""
    path = pathlib.Path(importlib.import_module(package).__file__ or "")
    tree = ast.parse(path.read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1, ast.dump(imp)
                for alias in imp.names:
                    found[alias.name] = imp.module or ""
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_the_lazy_table_is_the_type_checking_imports(package):
    """What mypy and the layer test read (the TYPE_CHECKING imports) is what runs."""
    module = importlib.import_module(package)
    assert module._LAZY == _type_checking_imports(package)
    assert set(module._LAZY) <= set(module.__all__)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_its_modules_object(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        if name in module._LAZY:
            source = importlib.import_module(f"{package}.{module._LAZY[name]}")
            assert value is getattr(source, name), name
        assert name in dir(module)


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="no_such_thing"):
        trioflow.no_such_thing  # noqa: B018
    with pytest.raises(ImportError):
        exec("from trioflow import no_such_thing", {})


def _fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON value as its last line."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_function_keeps_its_name_when_its_namesake_module_loads():
    """``trioflow.delayed``/``run``/``progress`` are functions in modules of the same
    name: importing the module (unpickling a task does) must not put the module there."""
    got = _fresh(
        "import json, trioflow, trioflow.delayed, trioflow.run, trioflow.progress\n"
        "from trioflow import delayed as d\n"
        "print(json.dumps([type(trioflow.delayed).__name__, type(trioflow.run).__name__,\n"
        "                  type(trioflow.progress).__name__, trioflow.delayed is d]))")
    assert got == ["function", "function", "function", True]


def test_the_package_imports_nothing_until_a_name_is_used():
    got = _fresh("import json, sys, trioflow\n"
                 "before = sorted(m for m in sys.modules if m.startswith('trioflow.'))\n"
                 "trioflow.Client\n"
                 "print(json.dumps([before, 'trioflow.client' in sys.modules]))")
    # only the mechanism itself, and the version's one home (``trioflow.__version__``)
    assert got == [["trioflow.lazy_exports", "trioflow.versions"], True]


def test_a_scheduler_process_loads_neither_client_nor_engine_nor_worker():
    got = _fresh("import json, sys, trioflow.cli.scheduler, trioflow.net.scheduler_server\n"
                 "print(json.dumps(sorted(sys.modules)))")
    unwanted = [m for m in got if m.startswith(("trioflow.client", "trioflow.engine",
                                                 "trioflow.net.worker", "trioflow.cli.worker",
                                                 "trioflow.dashboard", "trioflow.asyncio"))]
    assert unwanted == []
    assert "asyncio" not in got


def test_a_worker_process_loads_neither_the_scheduler_machine_nor_asyncio():
    got = _fresh("import json, sys, trioflow.cli.worker, trioflow.net.worker_node\n"
                 "print(json.dumps(sorted(sys.modules)))")
    unwanted = [m for m in got if m.startswith(("trioflow.core.scheduler", "trioflow.client",
                                                 "trioflow.net.scheduler_server",
                                                 "trioflow.dashboard"))]
    assert unwanted == []
    assert "asyncio" not in got


def test_asyncio_is_not_running_when_it_was_never_imported():
    """``running_asyncio`` answers from ``sys.modules`` before importing anything."""
    got = _fresh("import json, sys\n"
                 "from trioflow.engine.asyncio_waits import running_asyncio\n"
                 "print(json.dumps([running_asyncio(), 'asyncio' in sys.modules]))")
    assert got == [False, False]


def test_asyncio_waits_work_once_asyncio_runs():
    import asyncio

    from trioflow.engine.asyncio_waits import running_asyncio

    async def main() -> bool:
        return running_asyncio()

    assert asyncio.run(main()) is True


def test_the_package_pickles_by_reference_inside_a_function():
    """A ``__main__`` function that names ``trioflow`` travels with it in its globals
    (cloudpickle pickles such functions by value)."""
    import pickle

    import cloudpickle

    namespace = {"trioflow": trioflow, "__name__": "__main__"}
    exec("def uses_it():\n    return trioflow.Client", namespace)
    fn = pickle.loads(cloudpickle.dumps(namespace["uses_it"]))
    assert fn() is trioflow.Client
    assert pickle.loads(pickle.dumps(trioflow)) is trioflow
