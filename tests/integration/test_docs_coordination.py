"""Every runnable example of docs/coordination.md runs and exits cleanly.

A block is runnable when it calls ``trioflow.run(``; each runs as its own script in a
subprocess (its tasks are defined in ``__main__``), under a timeout. The examples
assert their own results.
"""

from __future__ import annotations

import os
import pathlib
import re
import sys

import pytest
import trio

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "coordination.md"
TIMEOUT = 60
BLOCKS = [b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
          if "trioflow.run(" in b]


async def test_every_primitive_has_an_example():
    text = "\n".join(BLOCKS)
    for name in ("Lock", "Semaphore", "Queue", "Event", "Variable", "DeadlockError"):
        assert f"trioflow.{name}(" in text or f"trioflow.{name}" in text, name


@pytest.mark.parametrize("index", range(len(BLOCKS)))
async def test_docs_example_runs(index, tmp_path):
    script = tmp_path / f"example_{index}.py"
    script.write_text(BLOCKS[index])
    with trio.fail_after(TIMEOUT):
        proc = await trio.run_process([sys.executable, str(script)], capture_stdout=True,
                                      capture_stderr=True, check=False, cwd=tmp_path,
                                      env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, (proc.stdout.decode(), proc.stderr.decode())
    assert proc.stdout.strip()
