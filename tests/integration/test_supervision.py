"""Supervised worker processes (trioflow.nanny) and task endings that are not return or
raise: real processes, real kills."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest
import trio

import trioflow
from trioflow.nanny import Nanny, RestartPolicy

from .clihelpers import PY, Lines, cli_scheduler, stop

pytestmark = pytest.mark.slow


def exit_hard():
    os._exit(13)


def pid():
    return os.getpid()


def square(x):
    return x * x


def sys_exit():
    raise SystemExit(3)


def keyboard_interrupt():
    raise KeyboardInterrupt


def bare_base_exception():
    raise BaseException("bare")


async def async_sys_exit():
    raise SystemExit(4)


async def async_asyncio_cancelled():
    raise asyncio.CancelledError()


async def async_bare_base_exception():
    raise BaseException("bare async")


async def async_keyboard_interrupt():
    raise KeyboardInterrupt


async def workers_back(cluster, n):
    state = cluster.scheduler.state
    await cluster.scheduler.wait_for(lambda: len(state.workers) >= n)


async def test_os_exit_task_ends_in_killed_worker_and_the_cluster_keeps_serving():
    # the default shape of trioflow.run: 2 worker processes
    async with trioflow.open_local_cluster(2, 1, processes=True) as cluster:
        async with trioflow.AsyncClient(cluster.address) as client:
            with pytest.raises(trioflow.KilledWorker) as info:
                await client.submit(exit_hard)
            assert "exit_hard" in str(info.value) and len(info.value.workers) == 3
            # replaced, not left dead: both workers serve again
            await workers_back(cluster, 2)
            assert [code for n in cluster.nannies for code in n.exits] == [13, 13, 13]
            assert await client.gather(client.map(square, range(20))) == [
                x * x for x in range(20)]
            assert len((await client.status())["workers"]) == 2


async def test_kill_9_worker_is_replaced_under_its_name():
    async with trioflow.open_local_cluster(1, 1, processes=True) as cluster:
        async with trioflow.AsyncClient(cluster.address) as client:
            first = await client.submit(pid, pure=False)
            os.kill(first, signal.SIGKILL)
            await cluster.scheduler.wait_for(lambda: cluster.nannies[0].restarts == 1)
            again = await client.submit(pid, pure=False, workers=["worker-0"])
            assert again != first
            assert cluster.nannies[0].exits == [-signal.SIGKILL]


async def test_nanny_budget_and_final_exits(tmp_path):
    quick = RestartPolicy(max_restarts=2, window=60, first_delay=0.01, max_delay=0.02)
    dying = Nanny([PY, "-c", "import os; os._exit(9)"], "dying", policy=quick)
    await dying.run()  # returns: gave up after the budget
    assert dying.exits == [9, 9, 9] and dying.restarts == 2
    done = Nanny([PY, "-c", "pass"], "done", policy=quick)
    await done.run()  # exit 0 is the worker's own decision: not restarted
    assert done.exits == [0] and done.restarts == 0
    gave_up = Nanny([PY, "-c", "import sys; sys.exit(4)"], "gave-up", policy=quick)
    await gave_up.run()  # EXIT_GIVE_UP: restarting cannot help
    assert gave_up.exits == [4]
    one = Nanny([PY, "-c", "import os; os._exit(1)"], "one", policy=quick)
    await one.run()  # status 1 (an os._exit(1) in a task, a crash) is a death
    assert one.exits == [1, 1, 1]
    marker = tmp_path / "asked"
    code = (f"import os, sys, pathlib; p = pathlib.Path({str(marker)!r}); "
            "first = not p.exists(); p.touch(); sys.exit(75 if first else 0)")
    asked = Nanny([PY, "-c", code], "asked", policy=RestartPolicy(max_restarts=0))
    await asked.run()  # "restart me" is not a death: the budget of 0 allows it
    assert asked.exits == [75, 0] and asked.restarts == 1


async def test_nanny_cancel_leaves_no_process():
    nanny = Nanny([PY, "-c", "import time; time.sleep(60)"], "sleeper",
                  policy=RestartPolicy(stop_grace=1))
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(nanny.run)
        nursery.cancel_scope.cancel()
    assert proc.returncode is not None and nanny.process is None


ENDINGS = [
    (sys_exit, "SystemExit"), (keyboard_interrupt, "KeyboardInterrupt"),
    (bare_base_exception, "BaseException"), (async_sys_exit, "SystemExit"),
    (async_asyncio_cancelled, "CancelledError"),
    (async_bare_base_exception, "BaseException"),
    (async_keyboard_interrupt, "KeyboardInterrupt")]


async def test_base_exceptions_are_the_tasks_error():
    async with trioflow.open_local_cluster(1, 1, processes=True) as cluster:
        async with trioflow.AsyncClient(cluster.address) as client:
            worker = await client.submit(pid, pure=False)
            for fn, type_name in ENDINGS:
                with pytest.raises(trioflow.TaskFailed) as info:
                    await client.submit(fn)
                assert info.value.type_name.endswith(type_name), fn
                # the same worker process still serves: it did not die
                assert await client.submit(pid, pure=False) == worker
            assert cluster.nannies[0].restarts == 0


async def test_sys_exit_in_a_task_does_not_end_the_client_program(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(
        "import sys, trioflow\n"
        "def task():\n"
        "    sys.exit(3)\n"
        "def main():\n"
        "    c = trioflow.get_client()\n"
        "    try:\n"
        "        c.submit(task).result()\n"
        "    except trioflow.TaskFailed as exc:\n"
        "        print('caught', exc.type_name, flush=True)\n"
        "    return c.submit(abs, -5).result()\n"
        "if __name__ == '__main__':\n"
        "    print('result', trioflow.run(main, workers=1, threads_per_worker=1))\n")
    result = await trio.run_process([sys.executable, str(script)], capture_stdout=True,
                                    capture_stderr=True, check=False)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert "caught builtins.SystemExit" in out and "result 5" in out


async def test_worker_nworkers_supervises_n_workers():
    async with cli_scheduler() as (address, _):
        proc = await trio.lowlevel.open_process(
            [PY, "-m", "trioflow.cli", "worker", address, "--nworkers", "2", "--name", "pool",
             "--log-level", "info"], stderr=subprocess.PIPE)
        try:
            lines = Lines(proc.stderr)
            async with trioflow.AsyncClient(address) as client:
                await client.wait_for_workers(2, timeout=30)
                names = sorted(w["name"] for w in (await client.status())["workers"])
                assert names == ["pool-0", "pool-1"]
                victim = await client.submit(pid, pure=False, workers=["pool-1"])
                os.kill(victim, signal.SIGKILL)
                await lines.wait_for("restarting it")
                assert await client.submit(pid, pure=False, workers=["pool-1"]) != victim
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                assert await proc.wait() == 0
        finally:
            await stop(proc)


async def test_local_cluster_workers_leave_quietly(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(
        "import trioflow\n"
        "def main():\n"
        "    c = trioflow.get_client()\n"
        "    return sum(c.gather(c.map(abs, range(-5, 5))))\n"
        "print(trioflow.run(main, workers=2, threads_per_worker=1))\n"
        "with trioflow.Client(workers=2, threads_per_worker=1) as c:\n"
        "    print(c.submit(abs, -3).result())\n")
    result = await trio.run_process([sys.executable, str(script)], capture_stdout=True,
                                    capture_stderr=True, check=False)
    assert result.returncode == 0
    assert result.stdout.decode().split() == ["25", "3"]
    assert result.stderr.decode() == ""  # no "lost the scheduler", no warnings
