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

import os
import time
from typing import Any

from ..procfs import peak_rss_mb
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


def _rss_bytes(pid: int) -> int | None:
    """Resident bytes of ``pid`` now (``VmRSS``), or None if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the scheduler, when it runs as its own process)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found


def async_recursion(cluster: Cluster, n: int, small: int) -> dict[str, Any]:
    """A large ``async def`` recursion (fib(28): 1,028,457 tasks) and its memory.

    Memory is bounded when what the processes keep does not grow with the tasks run:
    the peak resident memory of every process (workers, the scheduler, and this one,
    which holds the client) is measured after a ``fib(small)`` run and again after
    the ``fib(n)`` run, each against the resident memory after the warm-up. Rows:
    ``async_rec_<tasks>`` with ``us_per_task`` (wall time per task) and
    ``bytes_per_task`` (the growth of the big run over its tasks), and the growth of
    both runs in MB (equal growths: bounded; growth in proportion to tasks: a leak).

    The scheduler's run log (``config.RUN_LOG_LENGTH`` finished runs, for the
    dashboard) is most of the growth: it fills during the first 100,000 tasks and then
    stays. ``small=24`` (150,049 tasks) fills it before the big run starts.
    """
    fn = cluster.task("async_fib")
    cluster.result(cluster.submit(fn, 5))  # warm-up
    me = os.getpid()  # (the client; and the scheduler too in the in-process shape)
    pids = sorted({*cluster.worker_pids(), *_children(me), me})
    base = [_rss_bytes(p) for p in pids]

    def growth() -> float | None:
        peaks = [peak_rss_mb(p) for p in pids]
        if any(x is None for x in [*peaks, *base]):
            return None
        return sum(pk * 1e6 - b for pk, b in zip(peaks, base))  # type: ignore[operator]

    cluster.result(cluster.submit(fn, small))
    grown_small = growth()
    start = time.perf_counter()
    value = cluster.result(cluster.submit(fn, n))
    seconds = time.perf_counter() - start
    if value != fib_value(n):
        raise AssertionError(f"async_fib({n}) returned {value}, expected {fib_value(n)}")
    grown = growth()
    tasks = task_count(n)
    row = {"seconds": seconds, "unit": "s", "work": tasks, "tasks": tasks,
           "tasks_per_s": round(tasks / seconds),
           "us_per_task": round(seconds / tasks * 1e6, 1),
           "bytes_per_task": None if grown is None else round(grown / tasks, 1),
           "growth_mb": None if grown is None else round(grown / 1e6, 1),
           f"growth_mb_after_{task_count(small)}_tasks":
               None if grown_small is None else round(grown_small / 1e6, 1)}
    return {f"async_rec_{tasks}": row}
