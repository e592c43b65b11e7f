"""trioflow's benchmark suite: the same workloads on trioflow and dask.distributed.

Run from the repository root: ``python -m benchmarks [--compare dask] [--quick]
[--only NAME ...] [--repeats N]``; see docs/benchmarks.md for the method and the latest
numbers. Nothing here is imported by trioflow or its tests. Worker processes import
parts of this package to unpickle task functions, so this file imports nothing.
"""
