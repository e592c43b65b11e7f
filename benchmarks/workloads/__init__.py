"""The workloads: what each measures, with which parameters, where, and how long it may take.

Every workload runs once per repeat per system in a fresh subprocess with a fresh
cluster (``benchmarks.child``), except ``startup``, whose subprocess *is* the
measurement (``benchmarks.workloads.startup``). A workload produces one or more *rows*
(``map_10k``, ``w2w_bytes_100mb``...); the tables compare rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_SYSTEMS = ("trioflow", "dask", "ray")


@dataclass(frozen=True)
class Workload:
    """One benchmark.

    Attributes:
        name: what ``--only`` selects.
        target: ``"module:function"`` run against a started cluster, or ``"script"``.
        params: keyword arguments of the function in a full run.
        quick: the same in ``--quick`` mode (None: as in a full run).
        in_quick: whether ``--quick`` runs it at all.
        systems: systems that can run it.
        quick_systems: the systems that run it in ``--quick`` mode.
        timeout: seconds one run (cluster start included) may take before it is killed
            and reported as ``timeout/hang``; a system that times out is not repeated.
        max_repeats: cap on repeats for slow workloads.
    """

    name: str
    target: str
    params: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] | None = None
    in_quick: bool = True
    systems: tuple[str, ...] = ALL_SYSTEMS
    quick_systems: tuple[str, ...] = ALL_SYSTEMS
    timeout: float = 120.0
    max_repeats: int | None = None

    def runs_on(self, system: str, quick: bool) -> bool:
        return system in self.systems and (not quick or system in self.quick_systems)


_R = "benchmarks.workloads.roundtrip:"
_F = "benchmarks.workloads.recursion:"

WORKLOADS: list[Workload] = [
    Workload("startup", "script", timeout=90),
    Workload("latency", _R + "latency", {"iterations": 300}, {"iterations": 200}, timeout=90),
    Workload("map_10k", _R + "map_noop", {"tasks": 10_000, "row": "map_10k"}, timeout=180),
    Workload("map_100k", _R + "map_noop", {"tasks": 100_000, "row": "map_100k"},
             in_quick=False, timeout=420, max_repeats=3),
    Workload("fanout_1000", _R + "fanout", {"tasks": 1000}, timeout=120),
    Workload("fib_15", _F + "fib_secede", {"n": 15}, timeout=120),
    Workload("fib_18", _F + "fib_secede", {"n": 18}, quick_systems=("trioflow",),
             timeout=120, max_repeats=3),
    Workload("fib_20", _F + "fib_secede", {"n": 20}, quick_systems=("trioflow",),
             timeout=120, max_repeats=3),
    Workload("async_fib", _F + "fib_async", {"n": 25}, {"n": 20}, systems=("trioflow",),
             timeout=480, max_repeats=2),
    Workload("async_rec_1m", _F + "async_recursion", {"n": 28, "small": 24},
             {"n": 22, "small": 18}, systems=("trioflow",), timeout=900,
             max_repeats=1),
    Workload("data", "benchmarks.workloads.data_transfer:transfers", {"megabytes": 100},
             timeout=240),
    Workload("delayed_tree", "benchmarks.workloads.delayed_tree:delayed_tree",
             {"leaves": 10_000}, systems=("trioflow", "dask"), timeout=300, max_repeats=3),
    Workload("dask_array", "benchmarks.workloads.dask_array:dask_array",
             {"n": 20_000, "chunk": 1_000}, {"n": 5_000, "chunk": 250},
             systems=("trioflow", "dask"), timeout=600, max_repeats=3),
    Workload("lock_1000", "benchmarks.workloads.coordination:lock_roundtrips",
             {"ops": 1000}, {"ops": 300}, systems=("trioflow", "dask"), timeout=120),
    Workload("queue_1000", "benchmarks.workloads.coordination:queue_roundtrips",
             {"ops": 1000}, {"ops": 300}, systems=("trioflow", "dask"), timeout=120),
]

BY_NAME = {w.name: w for w in WORKLOADS}
