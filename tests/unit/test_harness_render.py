"""Programs rendered as trioflow scripts: valid Python, one function per task, the right
slot calls for each wait style. (fuzz/test_live_programs.py runs rendered scripts on a
real cluster and compares them with the simulator.)"""

from __future__ import annotations

import ast
import inspect

import pytest

from trioflow.testing import ClusterShape, Program, Wait, enumerate_programs, render_program
from trioflow.testing.render import function_name


def _calls(fn_node: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(fn_node):
        if isinstance(node, ast.Call):
            f = node.func
            names.append(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "?"))
    return names


def _functions(source: str) -> dict[str, ast.AST]:
    tree = ast.parse(source)
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_small_program_renders_to_valid_python():
    for program in enumerate_programs(2, 2, async_leaves=True):
        source = render_program(program, ClusterShape(workers=2, slots=3))
        functions = _functions(source)
        assert set(functions) == {function_name(path) for path, _ in program.nodes()} | {"main"}
        assert "trioflow.run(main, workers=2, threads_per_worker=3)" in source


@pytest.mark.parametrize(("wait", "expected"), [
    (Wait.NONE, ["get_client", "submit", "gather"]),
    (Wait.SECEDE, ["get_client", "submit", "secede", "gather", "rejoin"]),
    (Wait.WORKER_CLIENT, ["worker_client", "submit", "gather"]),
    (Wait.ASYNC, ["get_client", "gather", "submit"]),
])
def test_each_wait_style_uses_its_calls(wait, expected):
    program = Program(wait=wait, children=(Program(),))
    fn = _functions(render_program(program))["task_0"]
    calls = [c for c in _calls(fn) if c in {"get_client", "submit", "secede", "gather", "rejoin",
                                            "worker_client"}]
    assert sorted(calls) == sorted(expected)
    assert isinstance(fn, ast.AsyncFunctionDef) == (wait is Wait.ASYNC)


def test_rendered_script_defines_working_functions():
    program = Program(wait=Wait.SECEDE, children=(Program(fail=True), Program(wait=Wait.ASYNC)))
    namespace: dict[str, object] = {"__name__": "rendered"}
    exec(compile(render_program(program), "<rendered>", "exec"), namespace)
    assert inspect.iscoroutinefunction(namespace["task_0_1"])
    assert namespace["task_0_1"].__code__.co_name == "task_0_1"
    with pytest.raises(RuntimeError, match=r"task 0\.0 failed on purpose"):
        namespace["task_0_0"]()
    assert inspect.iscoroutinefunction(namespace["main"])


def test_minimal_deadlock_script_reads_like_the_docs():
    source = render_program(Program(wait=Wait.NONE, children=(Program(),)),
                            ClusterShape(workers=1, slots=1), prediction="DeadlockError")
    assert "Expected: DeadlockError" in source
    assert "WITHOUT seceding" in source
    assert "except trioflow.DeadlockError" in source
