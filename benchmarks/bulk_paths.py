"""``python -m benchmarks.bulk_paths [--megabytes 100] [--repeats 3]``: one bulk ``get``
of a value between two processes on this host, through shared memory and over TCP.

A data server (``net/bulk.serve_bulk``) runs in a child process holding a ``bytes``
value and a float64 array of ``--megabytes`` MB each; this process fetches each with a
``BulkPool`` offering shared memory (``/dev/shm`` segments, ``net/shm.py``) and with one
that does not (loopback TCP), alternating, and rebuilds the value. Reported per path and
value: the best wall time, and the CPU seconds both processes spent (``getrusage`` of
this one, ``/proc/<pid>/stat`` of the server) -- CPU time is the steadier number on a
shared machine. The rows say what one transfer costs, without scheduling around it;
the cluster-level rows are the ``data`` workload of ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

import trio

from trioflow import serialize
from trioflow.net.bulk import BulkPool

_SERVER = r"""
import os, sys, trio
import numpy as np
from trioflow import serialize
from trioflow.net.bulk import serve_bulk
n = int(sys.argv[1])
values = {"bytes": serialize.dumps_frames(os.urandom(n)),
          "numpy": serialize.dumps_frames(np.random.default_rng(0).random(n // 8))}
async def get(keys):
    return keys, [values[k] for k in keys], []
async def main():
    async with trio.open_nursery() as nursery:
        address = await nursery.start(lambda task_status: serve_bulk(
            get, None, "127.0.0.1", token="t", ssl_context=None, task_status=task_status))
        print(address, flush=True)
trio.run(main)
"""


def _cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


async def _measure(megabytes: int, repeats: int) -> list[tuple[str, str, float, float]]:
    n = megabytes * 10**6
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(n)],
                              stdout=subprocess.PIPE, text=True)
    rows = []
    try:
        assert server.stdout is not None
        address = server.stdout.readline().strip()
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(repeats):
            for shared in (True, False):
                pool = BulkPool(token="t", ssl_context=None, shared_memory=shared)
                for key in ("bytes", "numpy"):
                    got, _ = await pool.get(address, [key])  # warm-up: connection, imports
                    del got
                    c0, s0, t0 = _own_cpu(), _cpu_of(server.pid), time.perf_counter()
                    got, _ = await pool.get(address, [key])
                    value = serialize.loads_frames(got[key])
                    wall = time.perf_counter() - t0
                    cpu = _own_cpu() - c0 + _cpu_of(server.pid) - s0
                    del got, value
                    path = "shared memory" if shared else "loopback TCP"
                    samples.setdefault((path, key), []).append((wall, cpu))
                await pool.aclose()
        for (path, key), values in samples.items():
            walls = sorted(w for w, _ in values)
            cpus = sorted(c for _, c in values)
            rows.append((path, key, walls[0], cpus[len(cpus) // 2]))
    finally:
        server.kill()
        server.wait()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bulk_paths",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = trio.run(_measure, args.megabytes, args.repeats)
    print(f"| {args.megabytes} MB, one bulk get | value | best wall ms | MB/s | "
          "median CPU ms (both processes) |")
    print("|---|---|---|---|---|")
    for path, key, wall, cpu in rows:
        print(f"| {path} | {key} | {wall * 1e3:.0f} | {args.megabytes / wall:,.0f} | "
              f"{cpu * 1e3:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
