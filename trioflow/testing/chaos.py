"""Tasks for the chaos tests (fuzz/test_chaos.py) that run in worker processes: they
live in an importable module, so the workers unpickle them by reference."""

from __future__ import annotations

import time

from ..in_task import worker_client


def inc(x: int) -> int:
    return x + 1


def slow_inc(x: int) -> int:
    time.sleep(0.01)  # stands for work, so a frozen worker holds runs when it stops
    return x + 1


def tree(width: int, depth: int) -> int:
    """How many tasks this subtree has, counted by running it: each task submits its
    children from inside (``worker_client`` gives its slot back while it waits)."""
    if depth == 0:
        return 1
    with worker_client() as client:
        children = [client.submit(tree, width, depth - 1, pure=False) for _ in range(width)]
        counts = client.gather(children)
        assert isinstance(counts, list)  # a sync task's worker_client blocks
        return 1 + sum(counts)


def tree_size(width: int, depth: int) -> int:
    """How many tasks ``tree(width, depth)`` runs."""
    return sum(width**d for d in range(depth + 1))
