"""Render a task program as a standalone, runnable trioflow script.

When Hypothesis shrinks a failing program, ``repr`` shows it as data; this shows it as
the code a user would have written: one function per task, named after its place in
the tree (``task_0``, ``task_0_1``, ...), using ``trioflow.get_client``,
``secede``/``rejoin``, ``worker_client`` or ``async def`` exactly as the simulator
models them, and a ``main`` run by ``trioflow.run`` on the same cluster shape.

The script depends on nothing but trioflow. A failing task raises
``RuntimeError("task <path> failed on purpose")``.
"""

from __future__ import annotations

from .program import ClusterShape, Program, Wait

__all__ = ["function_name", "render_program"]

_STYLE_NOTES = {
    Wait.NONE: "waits on them WITHOUT seceding: it keeps its slot while it waits",
    Wait.SECEDE: "secedes, waits on them, then rejoins",
    Wait.WORKER_CLIENT: "waits on them inside worker_client() (which secedes and rejoins)",
    Wait.ASYNC: "awaits them (an async task holds no slot while it awaits)",
}


def function_name(path: str) -> str:
    """The Python name of the task at ``path`` (``"0.1"`` -> ``task_0_1``)."""
    return "task_" + path.replace(".", "_")


def render_program(program: Program, shape: ClusterShape | None = None, *,
                   prediction: str = "", title: str = "") -> str:
    """The source of a script that runs ``program`` on a local cluster of ``shape``.

    Args:
        prediction: what the simulator says will happen (shown in the docstring).
        title: the docstring's first line.
    """
    shape = shape or ClusterShape()
    head = title or "A trioflow task program, rendered by trioflow.testing."
    doc = [head, "", f"Program: {program!r}",
           f"Cluster: {shape.workers} worker(s) with {shape.slots} slot(s) each."]
    if prediction:
        doc.append(f"Expected: {prediction}")
    doc += ["", "Run: python this_script.py"]
    lines = ['"""' + "\n".join(doc) + '\n"""', "", "import trioflow", ""]
    for path, node in program.nodes():
        lines += ["", *_render_task(path, node), ""]
    root = function_name("0")
    lines += [
        "",
        "async def main():",
        "    client = trioflow.get_client()",
        "    try:",
        f"        result = await client.submit({root})",
        "    except trioflow.DeadlockError as exc:",
        '        print("DeadlockError:", exc)',
        "        raise",
        '    print("result:", result)',
        "    return result",
        "",
        "",
        'if __name__ == "__main__":',
        f"    trioflow.run(main, workers={shape.workers}, threads_per_worker={shape.slots})",
        "",
    ]
    return "\n".join(lines)


def _render_task(path: str, node: Program) -> list[str]:
    name = function_name(path)
    kids = [function_name(f"{path}.{i}") for i in range(len(node.children))]
    submits = ", ".join(f"client.submit({k})" for k in kids)
    fail = [f'    raise RuntimeError("task {path} failed on purpose")'] if node.fail else []
    ret = "    return 1 + sum(values)" if node.children else "    return 1"
    head = f"async def {name}():" if node.is_async else f"def {name}():"
    if not node.children:
        return [head, *(fail or [ret])]
    n = len(kids)
    note = _STYLE_NOTES[node.wait] if n > 1 else _STYLE_NOTES[node.wait].replace("them", "it")
    doc = f'    """Submits {n} child task{"s" if n > 1 else ""} and {note}."""'
    if node.wait is Wait.ASYNC:
        body = ["    client = trioflow.get_client()",
                f"    values = await client.gather([{submits}])"]
    elif node.wait is Wait.WORKER_CLIENT:
        body = ["    with trioflow.worker_client() as client:",
                f"        futures = [{submits}]",
                "        values = client.gather(futures)"]
    elif node.wait is Wait.SECEDE:
        body = ["    client = trioflow.get_client()",
                f"    futures = [{submits}]",
                "    trioflow.secede()",
                "    values = client.gather(futures)",
                "    trioflow.rejoin()"]
    else:
        body = ["    client = trioflow.get_client()",
                f"    futures = [{submits}]",
                "    values = client.gather(futures)  # holds the slot while waiting"]
    return [head, doc, *body, *(fail or [ret])]
