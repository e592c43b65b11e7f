"""A lazily built graph: pairwise tree reduction over 10,000 leaves with ``delayed``.

Leaves are ``delayed(noop)(i)``; each level adds neighbours with ``delayed(add)``
until one node is left: 10,000 leaves + 9,999 additions = 19,999 tasks, every one
distinct (``pure=False``). trioflow: ``trioflow.delayed`` + ``trioflow.compute``;
dask: ``dask.delayed`` + ``client.compute(...).result()``.

``seconds`` covers building the graph *and* computing it (building is client-side
Python in both systems); ``build_s`` is the building part alone.
"""

from __future__ import annotations

import time
from typing import Any

from ..systems import Cluster
from ..task_bodies import add, noop


def _tree(cluster: Cluster, leaves: int) -> Any:
    lazy_leaf, lazy_add = cluster.delayed(noop), cluster.delayed(add)
    level = [lazy_leaf(i) for i in range(leaves)]
    while len(level) > 1:
        pairs = [lazy_add(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            pairs.append(level[-1])
        level = pairs
    return level[0]


def delayed_tree(cluster: Cluster, leaves: int = 10_000) -> dict[str, Any]:
    """Build and compute the tree; check the sum."""
    cluster.compute(_tree(cluster, 16))  # warm-up
    start = time.perf_counter()
    root = _tree(cluster, leaves)
    built = time.perf_counter() - start
    total = cluster.compute(root)
    seconds = time.perf_counter() - start
    if total != leaves * (leaves - 1) // 2:
        raise AssertionError(f"tree sum {total} is wrong")
    tasks = 2 * leaves - 1
    return {f"delayed_tree_{leaves // 1000}k": {
        "seconds": seconds, "unit": "tasks/s", "work": tasks, "build_s": round(built, 4),
    }}
