"""``why``: the chain of reasons a task has not finished, one test per reason.

Workers run in this process (processes=False), so tasks can hold their slot on a
``threading.Event`` the test sets: no sleeps, no timing in pass/fail.
"""

from __future__ import annotations

import logging
import threading

import trio

import trioflow
from trioflow.net.worker_node import WorkerNode

from .clihelpers import PY
from .conftest import cluster_client

GATE = threading.Event()


def hold():
    GATE.wait(60)  # holds its slot until the test opens the gate
    return 1


def wait_inside(timeout):
    client = trioflow.get_client()
    # waits without seceding: holds the slot while the child needs one
    return client.submit(abs, -5, pure=False).result(timeout=timeout)


async def assigned(cluster, future):
    state = cluster.scheduler.state
    await cluster.scheduler.wait_for(
        lambda: (t := state.tasks.get(future.key)) is not None and t.worker is not None)


async def test_queued_on_a_worker_behind_a_task_and_at_the_scheduler():
    GATE.clear()
    async with cluster_client(1, 1) as (cluster, client):
        first = client.submit(hold, pure=False)
        second = client.submit(hold, pure=False)
        third = client.submit(hold, pure=False)
        await assigned(cluster, second)
        assert await client.why(first) == f"{first.key!r} is running on worker 'worker-0'"
        text = await client.why(second)
        assert text.startswith(f"{second.key!r} is queued on worker 'worker-0' behind 1 task(s)")
        text = await client.why(third)
        assert f"{third.key!r} is queued at the scheduler for a free slot" in text
        assert "slot(s) are held by running tasks" in text
        GATE.set()
        assert await client.gather([first, second, third]) == [1, 1, 1]
        assert await client.why(first) == (f"{first.key!r} is finished: its result is held "
                                           "by 'worker-0'")


async def test_waiting_for_a_dependency_recursively():
    GATE.clear()
    async with cluster_client(1, 1) as (cluster, client):
        blocker = client.submit(hold, pure=False)
        queued = client.submit(hold, pure=False)
        dependent = client.submit(abs, queued)
        deeper = client.submit(abs, dependent)
        await assigned(cluster, queued)
        lines = (await client.why(deeper)).splitlines()
        assert lines[0] == f"{deeper.key!r} waits for its input {dependent.key!r}"
        assert lines[1] == f"  {dependent.key!r} waits for its input {queued.key!r}"
        assert lines[2].startswith(f"    {queued.key!r} is queued on worker 'worker-0'")
        GATE.set()
        await client.gather([blocker, deeper])


async def test_restricted_to_a_worker_that_is_not_connected():
    async with cluster_client(1, 1) as (cluster, client):
        ghost = client.submit(abs, -1, workers=["ghost"])
        state = cluster.scheduler.state
        await cluster.scheduler.wait_for(lambda: ghost.key in state.unplaceable)
        text = await client.why(ghost)
        assert ("cannot run: it is restricted to worker 'ghost', which is not connected "
                "(connected: 'worker-0')") in text
        assert "fails with NoWorkersError in about" in text
        ghost.cancel()


async def test_no_slot_because_the_slots_are_held_by_tasks_waiting_on_z():
    GATE.clear()
    async with cluster_client(2, 1) as (cluster, client):
        z = client.submit(hold, pure=False, workers=["worker-1"])
        await assigned(cluster, z)
        waiter = client.submit(lambda: trioflow.get_client().gather(
            [trioflow.get_client().submit(abs, z)]), pure=False, workers=["worker-0"])
        state = cluster.scheduler.state
        await cluster.scheduler.wait_for(
            lambda: (t := state.tasks.get(waiter.key)) is not None and t.blocked_on)
        prefetched = client.submit(abs, -4)  # queued on worker-1, behind z
        await assigned(cluster, prefetched)
        later = client.submit(abs, -3)  # no room left anywhere: queued at the scheduler
        await cluster.scheduler.wait_for(lambda: later.key in state.tasks)
        lines = (await client.why(later)).splitlines()
        assert lines[0].startswith(f"{later.key!r} is queued at the scheduler")
        assert f"1 of the 2 slot(s) are held by tasks that wait: {waiter.key!r} waits for" \
            in lines[1]
        # and, one level down, why what it waits for waits
        assert any("waits for its input" in line and z.key in line for line in lines[2:])
        assert any(line.strip() == f"{z.key!r} is running on worker 'worker-1'"
                   for line in lines[2:])
        GATE.set()
        assert await client.gather([later, prefetched]) == [3, 4]
        await waiter


async def test_timed_wait_that_would_be_a_deadlock(caplog):
    caplog.set_level(logging.WARNING, "trioflow.net.scheduler_server")
    async with cluster_client(1, 1) as (cluster, client):
        waiter = client.submit(wait_inside, 60, pure=False)
        state = cluster.scheduler.state
        await cluster.scheduler.wait_for(
            lambda: (t := state.tasks.get(waiter.key)) is not None and t.blocked_timeout)
        text = await client.why(waiter)
        assert "with a timeout: without the timeout this would be a deadlock" in text
        assert "is queued" in text.splitlines()[1]  # the child, one level down
        warned = [r for r in caplog.records if "would be a deadlock" in r.getMessage()]
        assert len(warned) == 1
        # a new worker changes the picture: the child runs there, the wait ends
        extra = WorkerNode(cluster.address, nthreads=1, name="extra")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(extra.serve)
            assert await waiter == 5
            nursery.cancel_scope.cancel()
        assert len([r for r in caplog.records if "would be a deadlock" in r.getMessage()]) == 1


async def test_why_from_the_command_line():
    GATE.clear()
    async with cluster_client(1, 1) as (cluster, client):
        first = client.submit(hold, pure=False)
        second = client.submit(hold, pure=False)
        await assigned(cluster, second)
        out = await trio.run_process([PY, "-m", "trioflow.cli", "why", cluster.address,
                                      second.key], capture_stdout=True)
        assert out.stdout.decode().strip().startswith(
            f"{second.key!r} is queued on worker 'worker-0' behind 1 task(s)")
        out = await trio.run_process([PY, "-m", "trioflow.cli", "status", cluster.address,
                                      "--task", first.key], capture_stdout=True)
        text = out.stdout.decode()
        assert text.startswith("worker") and f"{first.key!r} is running" in text
        GATE.set()
        await client.gather([first, second])
