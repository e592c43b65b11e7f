"""``python -m benchmarks.messages [--fib 15] [--workers 2] [--style worker_client]``:
messages and frames per task of a recursive fib, by type and direction.

Runs fib(n) (a task per call) on an in-process cluster (``open_local_cluster``: the
workers are Trio tasks in this process but still talk to the scheduler over loopback
WebSockets), and counts, on the scheduler core, every message received (by type, and each slot report
folded into another message as its own "(folded)" entry), every
message sent (by type) and every frame received, per task of the measured run. One
warm-up run first (imports, function registration). CPU time is the whole process's
(client, scheduler and workers together), so it is only comparable between runs of
this script on the same machine.

This is how docs/design/local-placement.md counted messages before and after local
placement: counts do not depend on machine load; the CPU figure does.
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Sequence
from typing import Any

import trio

import trioflow
from trioflow.core import fold
from trioflow.core.events import MessagesReceived, Send
from trioflow.core.scheduler import Scheduler


def fib_worker_client(n: int) -> int:
    if n < 2:
        return n
    with trioflow.worker_client() as client:
        a, b = client.submit(fib_worker_client, n - 1), client.submit(fib_worker_client, n - 2)
        return a.result() + b.result()


async def fib_async(n: int) -> int:
    if n < 2:
        return n
    client = trioflow.get_client()
    a, b = client.submit(fib_async, n - 1), client.submit(fib_async, n - 2)
    return await a + await b


STYLES: dict[str, Any] = {"worker_client": fib_worker_client, "async": fib_async}


def _tasks(n: int) -> int:
    a, b = 0, 1
    for _ in range(n + 1):
        a, b = b, a + b
    return 2 * a - 1


async def measure(n: int, workers: int, style: str) -> dict[str, Any]:
    received: collections.Counter[str] = collections.Counter()
    sent: collections.Counter[str] = collections.Counter()
    frames = [0]
    original = Scheduler.handle

    def counting(self: Scheduler, event: Any) -> Any:
        if type(event) is MessagesReceived:
            frames[0] += 1
            for m in event.messages:
                received[type(m).__name__] += 1
                # a slot report folded into its carrier (core/fold.py) still counts
                folded = getattr(m, "slot_reports", None)
                for kind in folded[::3] if folded else ():
                    received[fold.REPORTS[kind].__name__ + " (folded)"] += 1
        out = original(self, event)
        sent.update(type(c.message).__name__ for c in out if type(c) is Send)
        return out

    fn = STYLES[style]
    Scheduler.handle = counting  # type: ignore[method-assign]
    try:
        async with trioflow.open_local_cluster(workers, 1) as cluster:
            async with trioflow.AsyncClient(cluster.address) as client:
                await client.submit(fn, 5)
                received.clear()
                sent.clear()
                frames[0] = 0
                wall, cpu = time.perf_counter(), time.process_time()
                value = await client.submit(fn, n)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        Scheduler.handle = original  # type: ignore[method-assign]
    tasks = _tasks(n)
    return {"fib": n, "value": value, "tasks": tasks, "wall_s": wall,
            "cpu_us_per_task": cpu / tasks * 1e6, "frames_in_per_task": frames[0] / tasks,
            "in": {k: v / tasks for k, v in received.most_common()},
            "out": {k: v / tasks for k, v in sent.most_common()}}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.messages",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fib", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--style", choices=sorted(STYLES), default="worker_client")
    args = parser.parse_args(argv)
    r = trio.run(measure, args.fib, args.workers, args.style)
    print(f"fib({r['fib']}) = {r['value']}: {r['tasks']} tasks, {r['wall_s']:.2f} s wall, "
          f"{r['cpu_us_per_task']:.0f} us CPU per task (whole process)")
    print(f"frames in per task: {r['frames_in_per_task']:.2f}")
    for direction in ("in", "out"):
        total = sum(r[direction].values())
        shown = ", ".join(f"{k} {v:.3f}" for k, v in r[direction].items())
        print(f"{direction:>3} {total:.2f} messages per task: {shown}")


if __name__ == "__main__":
    main()
