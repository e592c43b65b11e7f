"""Recursive Fibonacci on a local cluster, in every style trioflow supports.

What it shows:
    Option 3 of "Tasks that launch tasks" (docs/tasks-from-tasks.md): each call of
    ``fib`` submits its two children from inside a task and waits for them. Each style
    gives the task's slot back while it waits, so each prints fib(N) without
    deadlocking, even on 2 workers with 1 slot each:

    1. delayed + compute          (compute inside a task gives the slot back)
    2. get_client + secede/rejoin (explicit)
    3. worker_client              (a context manager that secedes for you)
    4. async def                  (awaiting holds no slot and no thread)

Run:
    python examples/fibonacci.py [N] [--scheduler ws://host:port]

Try:
    remove the secede()/rejoin() pair in fib_secede and run with N=3: the scheduler
    raises DeadlockError and tells you why (see examples/deadlock_broken.py).
"""

import argparse
import time

import trioflow


@trioflow.delayed
def fib_delayed(n):
    if n < 2:
        return n
    a, b = trioflow.compute(fib_delayed(n - 1), fib_delayed(n - 2))
    return a + b


def fib_secede(n):
    if n < 2:
        return n
    client = trioflow.get_client()
    a = client.submit(fib_secede, n - 1)
    b = client.submit(fib_secede, n - 2)
    trioflow.secede()
    a, b = client.gather([a, b])
    trioflow.rejoin()
    return a + b


def fib_worker_client(n):
    if n < 2:
        return n
    with trioflow.worker_client() as client:
        a = client.submit(fib_worker_client, n - 1)
        b = client.submit(fib_worker_client, n - 2)
        a, b = client.gather([a, b])
    return a + b


async def fib_async(n):
    if n < 2:
        return n
    client = trioflow.get_client()
    a, b = await client.gather([client.submit(fib_async, n - 1), client.submit(fib_async, n - 2)])
    return a + b


def main(n):
    client = trioflow.get_client()
    results = {}
    for name, run in [
        ("delayed/compute", lambda: fib_delayed(n).compute()),
        ("secede/rejoin", lambda: client.submit(fib_secede, n).result()),
        ("worker_client", lambda: client.submit(fib_worker_client, n).result()),
        ("async def", lambda: client.submit(fib_async, n).result()),
    ]:
        t0 = time.perf_counter()
        results[name] = run()
        print(f"fib({n}) = {results[name]:<6} {name:<16} {time.perf_counter() - t0:.3f}s")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=12)
    parser.add_argument("--scheduler", default=None, help="use a running scheduler")
    args = parser.parse_args()
    out = trioflow.run(main, args.n, address=args.scheduler, workers=None if args.scheduler else 2,
                       threads_per_worker=None if args.scheduler else 1)
    assert len(set(out.values())) == 1, out
