"""``python -m benchmarks.multihost [--megabytes 100] [--repeats 3]``: worker-to-worker
transfers across hosts, trioflow against dask (root only).

"Hosts" are Linux network namespaces joined by a bridge, as in
``tests/integration/test_multihost.py``: the scheduler and the driver in one, each of the
two workers (1 thread) in its own, every process with its own address, so nothing can
use loopback or shared memory (the namespaces differ, so trioflow's host identities do).
Per system, per repeat: a value of ``--megabytes`` MB (bytes, then a float64 array) is
made on worker 0, then a task pinned to worker 1 takes it and returns its size; timed
from that task's submit to its result (as the ``w2w_*`` rows of ``python -m benchmarks``).
The systems alternate, each with a fresh cluster per repeat. Prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from typing import Any

TAG = f"tfb{os.getpid() % 10000}"
NET = f"10.251.{os.getpid() % 200 + 20}"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_DRIVER = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {repo!r})
    from benchmarks.task_bodies import random_array, random_bytes, size_of
    system, address, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rows = {{}}
    if system == "trioflow":
        import trioflow
        client = trioflow.Client(address, token="bench")
        client.wait_for_workers(2, timeout=60)
        def submit(fn, *args, worker):
            return client.submit(fn, *args, workers=[f"w{{worker}}"])
        def wait(f):
            trioflow.wait([f])
    else:
        import distributed
        client = distributed.Client(address)
        client.wait_for_workers(2)
        names = {{w["name"]: a for a, w in client.scheduler_info()["workers"].items()}}
        def submit(fn, *args, worker):
            return client.submit(fn, *args, workers=[names[f"w{{worker}}"]], pure=False)
        def wait(f):
            distributed.wait([f])
    for label, make in (("bytes", random_bytes), ("numpy", random_array)):
        for size in (10**6, n):  # a 1 MB warm-up (connections, imports) first
            made = submit(make, size, worker=0)
            wait(made)
            t0 = time.perf_counter()
            got = submit(size_of, made, worker=1).result()
            seconds = time.perf_counter() - t0
            assert got == size, (got, size)
            del made
        rows[label] = n / 1e6 / seconds
    client.close()
    print("ROWS", json.dumps(rows), flush=True)
""")


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


@contextlib.contextmanager
def _hosts() -> Iterator[dict[str, tuple[str, str]]]:
    """Namespaces s (scheduler, driver), a, b (workers) on a bridge; removed afterwards."""
    names = {"s": 1, "a": 2, "b": 3}
    _sh("ip", "netns", "add", f"{TAG}x")
    try:
        x = ("ip", "netns", "exec", f"{TAG}x")
        _sh(*x, "ip", "link", "add", "br0", "type", "bridge")
        _sh(*x, "ip", "link", "set", "br0", "up")
        for n, host in names.items():
            ns = f"{TAG}{n}"
            _sh("ip", "netns", "add", ns)
            _sh("ip", "link", "add", f"{TAG}{n}0", "type", "veth", "peer", "name", f"{TAG}{n}1")
            _sh("ip", "link", "set", f"{TAG}{n}0", "netns", ns)
            _sh("ip", "link", "set", f"{TAG}{n}1", "netns", f"{TAG}x")
            e = ("ip", "netns", "exec", ns)
            _sh(*e, "ip", "addr", "add", f"{NET}.{host}/24", "dev", f"{TAG}{n}0")
            _sh(*e, "ip", "link", "set", f"{TAG}{n}0", "up")
            _sh(*e, "ip", "link", "set", "lo", "up")
            _sh(*x, "ip", "link", "set", f"{TAG}{n}1", "master", "br0")
            _sh(*x, "ip", "link", "set", f"{TAG}{n}1", "up")
        yield {n: (f"{TAG}{n}", f"{NET}.{h}") for n, h in names.items()}
    finally:
        for n in [*names, "x"]:
            for pid in _sh("ip", "netns", "pids", f"{TAG}{n}", check=False).stdout.split():
                _sh("kill", "-9", pid, check=False)
            _sh("ip", "netns", "del", f"{TAG}{n}", check=False)


def _in(ns: str, *argv: str, **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "TRIOFLOW_TOKEN": "bench", "PYTHONPATH": REPO}
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], env=env, text=True, **kw)


def _one_run(system: str, hosts: dict[str, tuple[str, str]], nbytes: int) -> dict[str, float]:
    (sns, sip), workers = hosts["s"], [hosts["a"], hosts["b"]]
    procs: list[subprocess.Popen[str]] = []
    py = sys.executable
    try:
        if system == "trioflow":
            sched = _in(sns, py, "-m", "trioflow.cli", "scheduler", "--host", sip, "--port", "0",
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            procs.append(sched)
            assert sched.stdout is not None
            address = sched.stdout.readline().strip()
            for i, (ns, ip) in enumerate(workers):
                procs.append(_in(ns, py, "-m", "trioflow.cli", "worker", address, "--name",
                                 f"w{i}", "--host", ip, stderr=subprocess.DEVNULL))
        else:
            fd, path = tempfile.mkstemp(suffix=".json")
            os.close(fd)
            os.unlink(path)
            procs.append(_in(sns, py, "-m", "distributed.cli.dask_scheduler", "--host", sip,
                             "--port", "0", "--no-dashboard", "--scheduler-file", path,
                             stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + 60
            while not os.path.exists(path) or not os.path.getsize(path):  # its own file
                if time.monotonic() > deadline:
                    raise RuntimeError("the dask scheduler did not start")
                time.sleep(0.1)
            address = json.load(open(path))["address"]
            for i, (ns, ip) in enumerate(workers):
                procs.append(_in(ns, py, "-m", "distributed.cli.dask_worker", address,
                                 "--nthreads", "1", "--name", f"w{i}", "--host", ip,
                                 "--no-nanny", "--no-dashboard", stderr=subprocess.DEVNULL))
        driver = _in(sns, py, "-c", _DRIVER.format(repo=REPO), system, address, str(nbytes),
                     stdout=subprocess.PIPE)
        out, _ = driver.communicate(timeout=180)
        line = next(x for x in out.splitlines() if x.startswith("ROWS "))
        return dict(json.loads(line[5:]))
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multihost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("network namespaces need root", file=sys.stderr)
        return 1
    results: dict[tuple[str, str], list[float]] = {}
    with _hosts() as hosts:
        for _ in range(args.repeats):
            for system in ("trioflow", "dask"):
                for row, mbs in _one_run(system, hosts, args.megabytes * 10**6).items():
                    results.setdefault((system, row), []).append(mbs)
    print(f"| {args.megabytes} MB worker -> worker across namespaces, MB/s | trioflow "
          "median (best) | dask median (best) |")
    print("|---|---|---|")
    for row in ("bytes", "numpy"):
        cells = []
        for system in ("trioflow", "dask"):
            v = results.get((system, row), [])
            cells.append(f"{statistics.median(v):,.0f} ({max(v):,.0f})" if v else "-")
        print(f"| {row} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
