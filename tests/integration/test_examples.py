"""Every script in examples/ runs, exits cleanly and prints the right answers.

Each example runs in a subprocess (``sys.executable``) under a timeout: once on the
local cluster it starts itself, and once more with ``--scheduler`` against a cluster
started from the command line (``trioflow scheduler`` + two ``trioflow worker``
processes), so the flag every example advertises is exercised too. The assertions check
the numbers the examples compute, not just that they printed something.

The tests are ``async def`` (this folder's conftest runs them under Trio with a
deadline); the examples themselves run in their own processes.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys

import pytest
import trio

import trioflow

from .clihelpers import cli_scheduler, start_worker, stop

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 60

#: script -> (extra argv, strings its stdout must contain)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "quickstart.py": ([], [
        "submit(inc, 10).result() = 11",
        "gather(map(inc, range(5))) = [1, 2, 3, 4, 5]",
        "add(futures[0], futures[4]) = 6",
        "gather of a dict = {'first': 1, 'total': 6}",
        "sum of scattered data = 4950",
        "wait: 5 done, 0 not done",
        "as_completed yielded, in finishing order:",
    ]),
    "gather_locally.py": ([], [
        "gathered 36 elements locally",
        "vowels counted by 36 tasks: 51",
    ]),
    "len_then_getitem.py": ([], [
        "the data has 8 elements and stays remote",
        "8 parts summarized remotely: total 1199997",
    ]),
    "deadlock_broken.py": ([], [
        "trioflow.DeadlockError after",
        "trioflow detected a deadlock: all 2 slot(s)",
        "holds a slot on worker",
        "(queued: no free slot)",
        "trioflow.worker_client()",
    ]),
    "deadlock_fixed.py": ([], [
        "fib(3) = 2 with fib in",
        "fib(12) = 144 with fib in",
    ]),
    "async_tasks.py": ([], [
        "tree_sum(0, 1000) = 499500",
        "50 async parents awaited their sync children: sum of squares 40425",
        "threads in a worker process:",
    ]),
    "task_errors.py": ([], [
        "1. caught ZeroDivisionError: division by zero",
        "in divide",
        "2. bad.exception() = ZeroDivisionError('division by zero')",
        "3. the dependent task failed with the same ZeroDivisionError",
        "4. gather(errors='skip') -> [2.0, 3.0]",
        "5. flaky with retries=2: succeeded on attempt 3",
        "flaky failing 5 times with retries=2 gives up: attempt 3 failed",
        "6. TaskFailed: type StrictError, text 'code 7: the remote side could not rebuild me'",
        "7. SerializationError: cannot pickle args[0]['lock']",
    ]),
    "trio_native.py": ([], [
        "worker(s)",
        "evens: [0, 4, 8]",
        "odds: [2, 6, 10]",
        "as_completed total: 12",
        "stopped waiting after 10 ms: True",
    ]),
    "from_dask.py": ([], [
        "workers and their threads: [1, 1]",
        "gather(map(inc, range(10))) = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]",
        "as_completed batches hold 6 futures",
        "wait(FIRST_EXCEPTION): 10 done, 0 not done",
        "add_done_callback called: True",
        "client.run(inc, 1) on each worker: [2, 2]",
        "executor (concurrent.futures): [0, 1, 4, 9]",
        "dask.array sum on trioflow: 99990000",
        "dask.delayed on trioflow: 285",
        "asyncio: await future = 42, as_completed = [0, 1, 4, 9]",
    ]),
    "fibonacci.py": (["10"], [
        "fib(10) = 55     delayed/compute",
        "fib(10) = 55     secede/rejoin",
        "fib(10) = 55     worker_client",
        "fib(10) = 55     async def",
    ]),
}


async def run_example(name: str, *argv: str, cwd: pathlib.Path, check: bool = True):
    """Run examples/<name>; return the finished process (stdout/stderr as text)."""
    with trio.fail_after(TIMEOUT):
        proc = await trio.run_process(
            [sys.executable, str(EXAMPLES / name), *argv],
            capture_stdout=True, capture_stderr=True, check=False, cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    proc.stdout = proc.stdout.decode()
    proc.stderr = proc.stderr.decode()
    if check:
        assert proc.returncode == 0, (
            f"{name} exited with {proc.returncode}\n--- stdout\n{proc.stdout}"
            f"\n--- stderr\n{proc.stderr}"
        )
    return proc


def check_output(name: str, out: str) -> None:
    for expected in EXPECTED[name][1]:
        assert expected in out, f"{name}: {expected!r} not in its output:\n{out}"


async def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == set(EXPECTED), "add new examples to EXPECTED (and remove deleted ones)"
    listed = (EXAMPLES / "README.md").read_text()
    for script in scripts:
        assert script in listed, f"examples/README.md does not list {script}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_example_on_its_own_cluster(name, tmp_path):
    proc = await run_example(name, *EXPECTED[name][0], cwd=tmp_path)
    check_output(name, proc.stdout)


@pytest.mark.slow
async def test_deadlock_fixed_with_auto_secede(tmp_path):
    proc = await run_example("deadlock_fixed.py", "--auto-secede", "3", "8", cwd=tmp_path)
    assert "fib(3) = 2 with fib_no_secede" in proc.stdout
    assert "fib(8) = 21 with fib_no_secede" in proc.stdout


@pytest.mark.slow
async def test_deadlock_broken_exits_1_without_a_deadlock(tmp_path):
    proc = await run_example("deadlock_broken.py", "-n", "1", cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no deadlock" in proc.stdout


@contextlib.asynccontextmanager
async def cli_cluster(workers: int = 2):
    """A scheduler and 1-slot workers started from the command line; yields the address."""
    env = {"TRIOFLOW_TOKEN": ""}  # an empty token means none: a loopback test cluster
    async with cli_scheduler("--log-level", "warning", env=env) as (address, _):
        assert address.startswith("ws://127.0.0.1:"), address
        procs = []
        try:
            for i in range(workers):
                procs.append(await start_worker(address, "--nthreads", "1", "--name",
                                                f"cli-worker-{i}", "--death-timeout", "10",
                                                env=env))
            async with trioflow.AsyncClient(address, token="") as client:
                await client.wait_for_workers(workers, timeout=30)
            yield address
        finally:
            with trio.CancelScope(shield=True):
                for proc in reversed(procs):
                    await stop(proc)


@pytest.mark.slow
async def test_examples_with_scheduler_flag(tmp_path):
    # one long-lived cluster of the same shape as the local ones (two 1-slot workers),
    # so the same output is expected; running every example on it in turn also checks
    # that each leaves the cluster usable for the next
    async with cli_cluster() as address:
        for name in sorted(EXPECTED):
            proc = await run_example(name, *EXPECTED[name][0], "--scheduler", address,
                                     cwd=tmp_path)
            check_output(name, proc.stdout)
