"""Coordination primitives: the cost of one Lock acquire/release and one Queue put/get.

A task on a worker does ``ops`` of them in a row (each is a round trip to the
scheduler, where both systems keep the primitives' state); ``seconds`` is the time per
operation as the client sees the whole task (its own submit/result round trip included,
about one ``latency``, amortized over ``ops``).
"""

from __future__ import annotations

import time
from typing import Any

from ..systems import Cluster


def lock_roundtrips(cluster: Cluster, ops: int = 1000, warmup: int = 50) -> dict[str, Any]:
    """``Lock.acquire()`` + ``release()`` ``ops`` times from one task: seconds per pair."""
    locks = cluster.task("locks")
    cluster.result(cluster.submit(locks, warmup))
    start = time.perf_counter()
    done = cluster.result(cluster.submit(locks, ops))
    seconds = time.perf_counter() - start
    if done != ops:
        raise AssertionError(f"{done} of {ops} lock round trips")
    return {f"lock_{ops}": {"seconds": seconds / ops, "unit": "ms/call", "work": 1, "ops": ops}}


def queue_roundtrips(cluster: Cluster, ops: int = 1000, warmup: int = 50) -> dict[str, Any]:
    """``Queue.put()`` ``ops`` times then ``get()`` ``ops`` times from one task: seconds
    per put+get."""
    queue = cluster.task("queue")
    cluster.result(cluster.submit(queue, warmup))
    start = time.perf_counter()
    done = cluster.result(cluster.submit(queue, ops))
    seconds = time.perf_counter() - start
    if done != ops:
        raise AssertionError(f"{done} of {ops} queue items came back")
    return {f"queue_{ops}": {"seconds": seconds / ops, "unit": "ms/call", "work": 1, "ops": ops}}
