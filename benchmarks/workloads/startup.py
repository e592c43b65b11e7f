"""Start to first result: a fresh ``python -c`` starts a cluster, runs one trivial task,
prints the answer.

Each system gets the same script shape (below): trioflow and dask start the
benchmark's cluster (``benchmarks.systems.open_cluster``, so ``--cluster`` chooses
between CLI processes, the default, and the in-process ``Client()``/``LocalCluster()``),
Ray runs ``ray.init``. The script stamps ``time.monotonic()``
(one system-wide clock on Linux, so stamps compare across processes) at its first line,
after importing the system, after the cluster is up and after the first result; the
harness stamps the moment just before it spawned the interpreter. Rows:

* ``start_to_first_result``: import done -> first result: starting the scheduler and
  the two worker processes (their interpreters and imports included), connecting,
  waiting for both workers to join, one task. This is what the 0.3 s target is about.
* ``start_to_first_result_incl_interpreter``: spawn of ``python`` -> first result, as a
  user running a script would experience it (adds interpreter start and the import).

Extras: ``interpreter_s`` (spawn -> first line), ``import_s``, ``cluster_up_s`` (import
done -> cluster object returned), and ``teardown_s`` (result printed -> process exit,
measured by the harness).

Bytecode: before each run the repository's packages are compiled to ``__pycache__``
where their ``.pyc`` files are missing or stale (``compileall``, outside the timed
window), as ``pip install`` leaves an installed package. Without it, a tree whose
sources changed since their bytecode was last written (always, where
``PYTHONDONTWRITEBYTECODE`` is set) compiles those modules again in each of the four
processes at every start: 0.61 s instead of 0.27 s measured side by side on one tree
(2026-12-02), a cost no user of an installed trioflow pays.
"""

from __future__ import annotations

import compileall
import sys
from pathlib import Path
from typing import Any

_PRELUDE = "import time; t0 = time.monotonic()\nimport json\n"
_EMIT = (
    "print('BENCH-RESULT ' + json.dumps({'t0': t0, 't1': t1, 't2': t2, 't3': t3, "
    "'value': value}), flush=True)\n"
)


def _cluster_script(system: str) -> str:
    # the benchmark's own cluster (``benchmarks.systems``), in the shape chosen by
    # --cluster: CLI processes by default, or the in-process Client()/LocalCluster()
    return (
        _PRELUDE + f"from benchmarks.systems import open_cluster\nimport {_PACKAGES[system]}\n"
        "t1 = time.monotonic()\n"
        f"with open_cluster({system!r}) as cluster:\n"
        "    t2 = time.monotonic()\n"
        "    value = cluster.result(cluster.submit(sum, [1, 2]))\n"
        "    t3 = time.monotonic()\n"
        "    " + _EMIT
    )


_PACKAGES = {"trioflow": "benchmarks.systems.trioflow_system",
             "dask": "benchmarks.systems.dask_system"}

SCRIPTS: dict[str, str] = {
    "trioflow": _cluster_script("trioflow"),
    "dask": _cluster_script("dask"),
    "ray": (
        _PRELUDE + "import ray\n"
        "t1 = time.monotonic()\n"
        "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)\n"
        "t2 = time.monotonic()\n"
        "value = ray.get(ray.remote(lambda: 3).remote())\n"
        "t3 = time.monotonic()\n" + _EMIT + "ray.shutdown()\n"
    ),
}


#: the repository's packages the scripts import (the systems' own are installed)
_PACKAGES_COMPILED = ("trioflow", "benchmarks")
_REPO = Path(__file__).resolve().parent.parent.parent


def command(system: str) -> list[str]:
    """The command line whose run is measured (its bytecode brought up to date first)."""
    for package in _PACKAGES_COMPILED:
        compileall.compile_dir(_REPO / package, quiet=1)
    return [sys.executable, "-c", SCRIPTS[system]]


def rows(result: dict[str, Any], spawned_at: float, teardown_s: float | None) -> dict[str, Any]:
    """Turn the script's stamps into rows."""
    if result.get("value") != 3:
        raise AssertionError(f"the first task returned {result.get('value')!r}, not 3")
    t0, t1, t2, t3 = result["t0"], result["t1"], result["t2"], result["t3"]
    extras = {"interpreter_s": round(t0 - spawned_at, 4), "import_s": round(t1 - t0, 4),
              "cluster_up_s": round(t2 - t1, 4),
              "teardown_s": None if teardown_s is None else round(teardown_s, 3)}
    return {
        "start_to_first_result": {"seconds": t3 - t1, "unit": "s", "work": 1, **extras},
        "start_to_first_result_incl_interpreter": {"seconds": t3 - spawned_at, "unit": "s",
                                                   "work": 1},
    }
