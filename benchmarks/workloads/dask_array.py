"""A dask.array workload: ``(x + x.T).sum()`` on an ``n`` x ``n`` array of random floats
in ``chunk`` x ``chunk`` blocks, computed by each system's client (issue 14).

Both systems run the very same dask graph: trioflow through ``Client.compute`` (each
graph node one trioflow task, keyed by its dask key), dask.distributed through its own
``Client.compute``. The transpose makes every block of the sum need a block computed
elsewhere, so blocks travel between the two workers. ``seconds`` covers building,
optimizing and submitting the graph and computing it; ``tasks`` is the graph's size
after dask's optimization.

Full run: 20,000 x 20,000 in 1,000 x 1,000 blocks (3.2 GB of float64 per array);
``--quick``: 5,000 x 5,000 in 250 x 250 blocks (same 400 blocks, 200 MB).
"""

from __future__ import annotations

import time
from typing import Any

from ..systems import Cluster


def dask_array(cluster: Cluster, n: int = 20_000, chunk: int = 1_000) -> dict[str, Any]:
    """Compute the sum; check it (each element of x + x.T averages 1.0)."""
    import dask.array as da
    from dask.base import collections_to_expr

    client = cluster.client  # type: ignore[attr-defined]
    warm = da.ones((4, 4), chunks=2).sum()
    client.compute(warm).result()
    start = time.perf_counter()
    x = da.random.RandomState(0).random_sample((n, n), chunks=(chunk, chunk))
    y = (x + x.T).sum()
    total = client.compute(y).result()
    seconds = time.perf_counter() - start
    if abs(total / (n * n) - 1.0) > 0.01:
        raise AssertionError(f"mean of x + x.T is {total / (n * n)}, not about 1.0")
    tasks = len(dict(collections_to_expr([y]).optimize().__dask_graph__()))
    blocks = (n // chunk) ** 2
    return {f"dask_array_{n // 1000}k": {
        "seconds": seconds, "unit": "blocks/s", "work": blocks, "tasks": tasks,
    }}
