"""What the dashboard costs the scheduler: ``python -m benchmarks.dashboard_cost``.

The scheduler (with or without its dashboard) runs in this process with two worker
processes; a client in another process submits tiny tasks as fast as the cluster takes
them, holding every future to the end (so the task table grows: the worst case for the
full pass), while a page's event stream and a Prometheus scrape (once a second) read the
dashboard. This process then holds only the scheduler and the dashboard, so its CPU time
is theirs.

Prints tasks/s, this process's CPU seconds, the seconds the dashboard spent making and
encoding snapshots (``Dashboard.cost``) and that as a share of the CPU; and the same run
without a dashboard, for the CPU difference (noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.request

import trio

import trioflow


def inc(x: int) -> int:
    return x + 1


def client_main(address: str, board: str, n: int, batch: int) -> None:
    """The load, in its own process: submit, read the events, scrape /metrics."""
    stop = threading.Event()
    seen = {"events": 0, "scrapes": 0}

    def read_events() -> None:
        with urllib.request.urlopen(board + "/events", timeout=30) as resp:
            while not stop.is_set():
                line = resp.readline()
                if line.startswith(b"data: "):
                    seen["events"] += 1

    def scrape() -> None:
        while not stop.wait(1.0):
            urllib.request.urlopen(board + "/metrics", timeout=30).read()
            seen["scrapes"] += 1

    if board:
        for fn in (read_events, scrape):
            threading.Thread(target=fn, daemon=True).start()
    with trioflow.Client(address) as client:
        held = []
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            futures = client.map(inc, range(start, start + batch))
            client.gather(futures)
            held.extend(futures)
        elapsed = time.perf_counter() - t0
    stop.set()
    print(json.dumps({"tasks": n, "seconds": elapsed, **seen}), flush=True)


async def one_run(n: int, batch: int, dashboard: bool) -> dict[str, float]:
    async with trioflow.open_local_cluster(
            2, 1, processes=True, dashboard_address="127.0.0.1:0" if dashboard else None) as cluster:
        board = cluster.dashboard.address if cluster.dashboard is not None else ""
        cpu0 = time.process_time()
        out = await trio.to_thread.run_sync(lambda: subprocess.run(
            [sys.executable, "-m", "benchmarks.dashboard_cost", "--client", cluster.address,
             board, str(n), str(batch)], check=True, capture_output=True, text=True).stdout)
        cpu = time.process_time() - cpu0
        result = json.loads(out.strip().splitlines()[-1])
        cost = cluster.dashboard.cost if cluster.dashboard is not None else 0.0
        scans = cluster.dashboard.observer.scan_cost if cluster.dashboard is not None else 0.0
        return {"rate": n / result["seconds"], "cpu": cpu, "dashboard_s": cost,
                "scan_s": scans, "share": cost / cpu if cpu else 0.0,
                "events": result.get("events", 0), "scrapes": result.get("scrapes", 0)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_cost")
    parser.add_argument("--tasks", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--client", nargs=4, metavar=("ADDRESS", "BOARD", "N", "BATCH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        address, board, n, batch = args.client
        client_main(address, board, int(n), int(batch))
        return
    for dashboard in (True, False):
        r = trio.run(one_run, args.tasks, args.batch, dashboard)
        label = "with dashboard   " if dashboard else "without dashboard"
        print(f"{label}: {r['rate']:8.0f} tasks/s, scheduler process CPU {r['cpu']:.2f} s, "
              f"dashboard {r['dashboard_s'] * 1000:.1f} ms (full passes {r['scan_s'] * 1000:.1f} ms)"
              f" = {100 * r['share']:.2f}% of the CPU; {r['events']} events, "
              f"{r['scrapes']} scrapes", flush=True)


if __name__ == "__main__":
    main()
