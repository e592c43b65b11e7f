"""When tasks fail: the remote exception and traceback, dependents, retries, TaskFailed.

What it shows:
    1. A task raises: ``future.result()`` raises the *same* exception type here, and
       its ``__cause__`` carries the traceback formatted on the worker, so an ordinary
       traceback print shows where in the task it went wrong.
    2. ``future.exception()`` returns the exception instead of raising it.
    3. A task that depends on a failed one fails with the same error, without running.
    4. ``client.gather(..., errors="skip")`` leaves the failed futures out.
    5. ``retries=2`` re-runs a flaky task up to twice more before giving up.
    6. An exception that cannot be rebuilt in the client arrives as
       ``trioflow.TaskFailed`` with its type name, text and remote traceback.
    7. An argument that cannot be pickled fails at ``submit`` time, in the client, with
       a ``trioflow.SerializationError`` that says where the culprit sits.

Run:
    python examples/task_errors.py
    python examples/task_errors.py --scheduler ws://127.0.0.1:8786
        (the flaky task counts its attempts in a temporary file, so on a cluster that
        spans machines its attempts may be counted per machine)

Try:
    * set ``retries=1`` for the flaky task: two failures are one too many;
    * raise your own exception class from a task and catch it by type in the client.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import traceback

import trioflow


def divide(a: float, b: float) -> float:
    return a / b


def inc(x: float) -> float:
    return x + 1


def flaky(counter_path: str, failures: int) -> str:
    """Fail the first ``failures`` calls (counted in a file), then succeed."""
    with open(counter_path, "a+", encoding="ascii") as f:
        f.seek(0)
        attempt = len(f.read()) + 1
        f.write("x")
    if attempt <= failures:
        raise ConnectionError(f"attempt {attempt} failed")
    return f"succeeded on attempt {attempt}"


class StrictError(Exception):
    """Needs two arguments to be built, so unpickling it elsewhere fails."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")


def strict() -> None:
    raise StrictError(7, "the remote side could not rebuild me")


def main() -> None:
    client = trioflow.get_client()

    # 1. the remote exception, with the worker's traceback as its cause
    bad = client.submit(divide, 1, 0)
    try:
        bad.result()
    except ZeroDivisionError as exc:
        print(f"1. caught {type(exc).__name__}: {exc}")
        remote = str(exc.__cause__).strip().splitlines()  # the worker's traceback text
        print("   its remote traceback ends with:")
        print("\n".join("     | " + line for line in remote[-2:]))
        full = "".join(traceback.format_exception(exc))  # what an uncaught error prints
        assert "in divide" in full

    # 2. inspect without raising
    print(f"2. bad.exception() = {bad.exception()!r}")

    # 3. dependents fail with the same error and never run
    later = client.submit(inc, bad)
    try:
        later.result()
    except ZeroDivisionError:
        print("3. the dependent task failed with the same ZeroDivisionError")

    # 4. keep what succeeded
    mixed = [client.submit(divide, 6, 3), bad, client.submit(divide, 9, 3)]
    print(f"4. gather(errors='skip') -> {client.gather(mixed, errors='skip')}")

    # 5. retries
    with tempfile.TemporaryDirectory() as tmp:
        ok = client.submit(flaky, os.path.join(tmp, "a"), 2, retries=2)
        print(f"5. flaky with retries=2: {ok.result()}")
        try:
            client.submit(flaky, os.path.join(tmp, "b"), 5, retries=2).result()
        except ConnectionError as exc:
            print(f"   flaky failing 5 times with retries=2 gives up: {exc}")

    # 6. an exception type that cannot be rebuilt here
    try:
        client.submit(strict).result()
    except trioflow.TaskFailed as exc:
        print(f"6. TaskFailed: type {exc.type_name.rsplit('.', 1)[-1]}, text {exc.text!r}, "
              f"{len(exc.remote_traceback.splitlines())} lines of remote traceback")

    # 7. unpicklable arguments fail in the client, before anything is sent
    config = {"retries": 3, "lock": threading.Lock()}
    try:
        client.submit(len, config)
    except trioflow.SerializationError as exc:
        print(f"7. SerializationError: {str(exc).split('. ')[0]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="use the running scheduler at ADDRESS (ws://host:port) instead "
                             "of starting a local cluster; set TRIOFLOW_TOKEN if it has a token")
    args = parser.parse_args()
    trioflow.run(main, address=args.scheduler, workers=2, threads_per_worker=1)
