"""Moving 100 MB: worker to worker, client to cluster (scatter), cluster to client (gather).

Data is incompressible (``os.urandom``; numpy: random float64), sizes are 10^8 bytes and
MB/s means 10^6 bytes per second. Producing the data is never timed.

* ``w2w_*``: a task on worker 0 makes the value; once it is done, a task pinned to worker
  1 takes it as an argument and returns its size. Timed: submit of the consumer ->
  its result (so it includes one small-task round trip, ~1 latency).
* ``scatter_100mb``: ``scatter(data)`` from the client, then a task that takes the
  scattered future and returns its size. Timed: from the scatter call until that
  size is back (scatter alone may return before the data has arrived anywhere).
* ``gather_*``: a task on worker 0 makes the value; once it is done, timed: the
  client's ``result()`` of it (all 100 MB arriving in the client process).

A warm-up moves 1 MB the same ways first, as bytes and as an array (connections,
imports: the first array a process unpickles imports numpy there).
"""

from __future__ import annotations

import gc
import importlib.util
import os
import time
from typing import Any

from ..systems import Cluster
from ..task_bodies import MB, random_array, random_bytes, size_of


def _w2w(cluster: Cluster, make: Any, nbytes: int) -> float:
    produced = cluster.submit(make, nbytes, worker=0)
    cluster.wait([produced])
    start = time.perf_counter()
    got = cluster.result(cluster.submit(size_of, produced, worker=1))
    seconds = time.perf_counter() - start
    if got != nbytes:
        raise AssertionError(f"worker 1 received {got} of {nbytes} bytes")
    return seconds


def _scatter(cluster: Cluster, nbytes: int) -> float:
    data = os.urandom(nbytes)
    start = time.perf_counter()
    future = cluster.scatter(data)
    got = cluster.result(cluster.submit(size_of, future))
    seconds = time.perf_counter() - start
    if got != nbytes:
        raise AssertionError(f"the cluster holds {got} of {nbytes} scattered bytes")
    return seconds


def _gather(cluster: Cluster, make: Any, nbytes: int) -> float:
    produced = cluster.submit(make, nbytes, worker=0)
    cluster.wait([produced])
    start = time.perf_counter()
    value = cluster.result(produced)
    seconds = time.perf_counter() - start
    if size_of(value) != nbytes:
        raise AssertionError(f"gathered {size_of(value)} of {nbytes} bytes")
    return seconds


def transfers(cluster: Cluster, megabytes: int = 100, numpy: bool = True) -> dict[str, Any]:
    """All data rows in one cluster; rows whose feature the system lacks are skipped."""
    nbytes = megabytes * MB
    pinning = "pinning" not in cluster.unsupported
    numpy = numpy and importlib.util.find_spec("numpy") is not None
    # warm-up: connections, and imports on every side (unpickling the first array
    # imports numpy in the receiving process, ~50 ms, which no row should pay)
    for make in (random_bytes, random_array) if numpy else (random_bytes,):
        if pinning:
            _w2w(cluster, make, MB)
            _gather(cluster, make, MB)
    _scatter(cluster, MB)
    plan: list[tuple[str, Any]] = []
    if pinning:
        plan.append((f"w2w_bytes_{megabytes}mb", lambda: _w2w(cluster, random_bytes, nbytes)))
        if numpy:
            plan.append((f"w2w_numpy_{megabytes}mb",
                         lambda: _w2w(cluster, random_array, nbytes)))
    plan.append((f"scatter_{megabytes}mb", lambda: _scatter(cluster, nbytes)))
    if pinning:
        plan.append((f"gather_{megabytes}mb", lambda: _gather(cluster, random_bytes, nbytes)))
        if numpy:
            plan.append((f"gather_numpy_{megabytes}mb",
                         lambda: _gather(cluster, random_array, nbytes)))
    rows = {}
    for row, measure in plan:
        gc.collect()  # drop the previous row's futures and values first
        rows[row] = {"seconds": measure(), "unit": "MB/s", "work": megabytes}
    return rows
