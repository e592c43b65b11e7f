"""The ``python`` blocks of docs/failures.md are complete programs: run each one."""

from __future__ import annotations

import pathlib
import re
import sys

import pytest
import trio

DOC = pathlib.Path(__file__).parents[2] / "docs" / "failures.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)

pytestmark = pytest.mark.slow


async def test_there_are_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
async def test_block_runs(index, tmp_path):
    script = tmp_path / f"block{index}.py"
    script.write_text(BLOCKS[index])
    result = await trio.run_process([sys.executable, str(script)], check=False,
                                    capture_stdout=True, capture_stderr=True, cwd=tmp_path)
    assert result.returncode == 0, (BLOCKS[index], result.stderr.decode())
