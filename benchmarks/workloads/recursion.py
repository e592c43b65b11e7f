"""Tasks that launch tasks: recursive Fibonacci trees of distinct tasks.

``fib(n)`` as a task submits ``fib(n-1)`` and ``fib(n-2)`` and waits on them, so the
tree has ``2 * F(n+1) - 1`` tasks (fib(15): 1,973; fib(18): 8,361; fib(20): 21,891;
fib(25): 242,785), every one distinct (no content-addressed sharing). At most one leaf
per worker computes at a time; everything else is a task waiting on its children, which
is what stresses secede/rejoin (sync) or await (async).

``seconds`` is the client's submit -> result of the root. Thread growth is measured by
the suite from outside (``/proc/<pid>/status`` of each worker, see
``benchmarks.procfs``), not here.
"""

from __future__ import annotations

import time
from typing import Any

from ..systems import Cluster


def fib_value(n: int) -> int:
    """F(n), computed locally, to check the cluster's answer."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def task_count(n: int) -> int:
    """Tasks in the recursion tree of fib(n): 2 * F(n+1) - 1."""
    return 2 * fib_value(n + 1) - 1


def _fib(cluster: Cluster, kind: str, n: int, row: str) -> dict[str, Any]:
    fn = cluster.task(kind)
    cluster.result(cluster.submit(fn, 5))  # warm-up: imports, function registration
    start = time.perf_counter()
    value = cluster.result(cluster.submit(fn, n))
    seconds = time.perf_counter() - start
    if value != fib_value(n):
        raise AssertionError(f"{kind}({n}) returned {value}, expected {fib_value(n)}")
    tasks = task_count(n)
    return {row: {"seconds": seconds, "unit": "s", "work": tasks, "tasks": tasks,
                  "tasks_per_s": round(tasks / seconds)}}


def fib_secede(cluster: Cluster, n: int) -> dict[str, Any]:
    """fib(n) with sync tasks that wait inside ``worker_client()`` (secede/rejoin)."""
    return _fib(cluster, "fib", n, f"fib_{n}")


def fib_async(cluster: Cluster, n: int) -> dict[str, Any]:
    """fib(n) with ``async def`` tasks that ``await`` their children."""
    return _fib(cluster, "async_fib", n, f"async_fib_{n}")
