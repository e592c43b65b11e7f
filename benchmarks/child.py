"""One benchmark run in its own process: ``python -m benchmarks.child SYSTEM WORKLOAD PARAMS``.

Starts a fresh cluster of SYSTEM, finds its worker pids (a pinned task on each worker
reports ``os.getpid()``), runs the workload function while a ``ThreadSampler`` watches
the workers' thread counts from this process, then prints one line
``BENCH-RESULT {json}`` *before* shutting the cluster down (so a slow or hanging
teardown cannot lose the numbers) and exits.

The JSON holds the workload's rows and the run's resources:

* ``peak_threads`` / ``baseline_threads``: ``Threads:`` of the busiest worker process,
  highest seen and first seen (after startup and the pid probe, before the workload).
* ``client_peak_threads``: the same for this process (client + scheduler + sampler).
* ``rss_client_mb``: peak RSS (``VmHWM``) of this process: the client, and with
  ``--cluster in-process`` the scheduler too (by default it is a process of its own).
* ``rss_workers_mb``: peak RSS of each worker process.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

from .procfs import ThreadSampler, peak_rss_mb
from .systems import open_cluster
from .workloads import BY_NAME

MARKER = "BENCH-RESULT "
_emitted: list[bool] = []


def emit(payload: dict[str, Any]) -> None:
    """Hand the result to the harness (stdout, one line, flushed); only the first counts."""
    if _emitted:
        return
    _emitted.append(True)
    sys.stdout.write(MARKER + json.dumps(payload) + "\n")
    sys.stdout.flush()


def _error(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def run(system: str, workload: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one workload on a fresh cluster; emit and return the payload."""
    module, function = BY_NAME[workload].target.split(":")
    fn = getattr(importlib.import_module(module), function)
    t0 = time.perf_counter()
    with open_cluster(system) as cluster:
        started = time.perf_counter() - t0
        pids = cluster.worker_pids()
        me = os.getpid()
        try:
            with ThreadSampler([*pids, me]) as sampler:
                rows = fn(cluster, **params)
        except Exception as exc:
            emit(_error(exc))  # now: tearing the cluster down may hang after a failure
            raise
        worker_peaks = [sampler.peaks.get(p) for p in pids]
        busiest = max(pids, key=lambda p: sampler.peaks.get(p, 0), default=None)
        payload = {
            "rows": rows,
            "resources": {
                "peak_threads": None if busiest is None else sampler.peaks.get(busiest),
                "baseline_threads": None if busiest is None else sampler.baseline.get(busiest),
                "worker_peak_threads": worker_peaks,
                "client_peak_threads": sampler.peaks.get(me),
                "thread_samples": sampler.samples,
                "rss_client_mb": peak_rss_mb(me),
                "rss_workers_mb": [peak_rss_mb(p) for p in pids],
            },
            "cluster_start_s": round(started, 3),
        }
        emit(payload)
    return payload


def main(argv: list[str]) -> int:
    system, workload, params = argv
    try:
        run(system, workload, json.loads(params))
    except BaseException as exc:
        emit(_error(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
