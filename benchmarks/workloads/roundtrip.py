"""Per-task overhead: sequential round trips, no-op maps, and fan-out from inside a task.

Every function gets a started cluster (see ``benchmarks.systems``), warms it up so that
connections, function registration and worker imports are done, then times one
measured piece of work with ``time.perf_counter`` in the benchmark process. Each
returns rows: ``{row_name: {"seconds": ..., "unit": ..., "work": ...}}``; ``seconds`` is
the primary (lower is better) number the suite compares across systems.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from ..systems import Cluster
from ..task_bodies import noop


def latency(cluster: Cluster, iterations: int = 300, warmup: int = 30) -> dict[str, Any]:
    """Sequential ``submit(noop, i)`` then ``result()``, ``iterations`` times.

    Measures the full round trip of one tiny task when nothing else is happening:
    client -> scheduler -> worker -> scheduler -> client. ``seconds`` is the mean time
    per call (total / iterations); p50/p99 of the individual calls are extras.
    """
    for i in range(warmup):
        cluster.result(cluster.submit(noop, i))
    laps = []
    start = time.perf_counter()
    for i in range(iterations):
        t0 = time.perf_counter()
        cluster.result(cluster.submit(noop, i))
        laps.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    laps.sort()
    return {"latency": {
        "seconds": total / iterations, "unit": "ms/call", "work": 1,
        "p50_ms": round(statistics.median(laps) * 1e3, 3),
        "p99_ms": round(laps[int(len(laps) * 0.99) - 1] * 1e3, 3),
        "iterations": iterations,
    }}


def map_noop(cluster: Cluster, tasks: int, row: str, warmup: int = 200) -> dict[str, Any]:
    """``map(noop, range(tasks))`` then ``gather`` of all the futures.

    Measures no-op task throughput through the whole system (submission, scheduling,
    running on 2 workers, results back to the client): ``tasks / seconds`` tasks/s,
    where ``seconds`` runs from the start of ``map`` to the end of ``gather``.
    """
    cluster.gather(cluster.map(noop, range(warmup)))
    start = time.perf_counter()
    futures = cluster.map(noop, range(tasks))
    submitted = time.perf_counter() - start
    values = cluster.gather(futures)
    seconds = time.perf_counter() - start
    if len(values) != tasks or values[-1] != tasks - 1:
        raise AssertionError("map returned wrong values")
    return {row: {"seconds": seconds, "unit": "tasks/s", "work": tasks,
                  "submit_s": round(submitted, 4)}}


def fanout(cluster: Cluster, tasks: int = 1000, warmup: int = 50) -> dict[str, Any]:
    """One task that submits ``tasks`` no-op tasks from inside (``worker_client()``) and
    gathers them.

    Measures launching tasks from a task: ``tasks / seconds`` tasks/s, where ``seconds``
    is the round trip of the outer task as seen by the client (it includes the outer
    task's own submit and result, about one ``latency``).
    """
    fan = cluster.task("fanout")
    cluster.result(cluster.submit(fan, warmup))
    start = time.perf_counter()
    count = cluster.result(cluster.submit(fan, tasks))
    seconds = time.perf_counter() - start
    if count != tasks:
        raise AssertionError(f"fan-out gathered {count} of {tasks}")
    return {f"fanout_{tasks}": {"seconds": seconds, "unit": "tasks/s", "work": tasks}}
