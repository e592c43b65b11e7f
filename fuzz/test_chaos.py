"""Chaos on real processes: workers killed with ``kill -9`` (the nanny replaces them)
during thousands of short tasks and tasks-from-tasks trees, and a worker frozen with
SIGSTOP, dropped for silence, then thawed.

Properties: every result is correct and arrives once, nothing is lost, and once the
client lets go the scheduler holds no task (its memory is bounded by what is wanted).
Kills are triggered by progress (every ``n`` results), never by a clock; every run is
under ``trio.fail_after``.

Profile ``ci``: 2,000 short tasks with 2 kills, a tree of 13 tasks with 1 kill, one
freeze. Profile ``fuzz``: 10,000 tasks with 10 kills, a tree of 1,365 tasks with 5 kills, for
5 seeds (which workers are killed).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import pytest
import trio

import trioflow
from trioflow.testing.chaos import inc, slow_inc, tree, tree_size
from trioflow.testing.profiles import active_profile

pytestmark = pytest.mark.slow

LONG = active_profile() == "fuzz"
NTASKS, NKILLS = (10_000, 10) if LONG else (2_000, 2)
TREE, TREE_KILLS = ((4, 5), 5) if LONG else ((3, 3), 1)  # (width, depth)


async def kill_one(cluster, rng):
    """SIGKILL one worker process that runs now (the nanny starts another)."""
    victims = [p for p in cluster.processes if p.returncode is None]
    if victims:
        with trio.CancelScope(shield=True):
            victim = rng.choice(victims)
            os.kill(victim.pid, signal.SIGKILL)


async def no_task_left(cluster):
    state = cluster.scheduler.state
    await cluster.scheduler.wait_for(lambda: not state.tasks)


@pytest.mark.parametrize("seed", range(5) if LONG else [0])
async def test_kill_9_during_short_tasks_and_trees(seed):
    rng = random.Random(seed)
    with trio.fail_after(300 if LONG else 90):
        async with trioflow.open_local_cluster(3, 2, processes=True,
                                               allowed_failures=1000) as cluster:
            async with trioflow.AsyncClient(cluster.address) as client:
                futures = client.map(inc, range(NTASKS), pure=False)
                every = NTASKS // (NKILLS + 1)
                seen: dict[str, int] = {}
                async for fut in trioflow.as_completed(futures):
                    assert fut.key not in seen  # each future completes once
                    seen[fut.key] = await fut
                    if len(seen) % every == 0 and len(seen) < NTASKS:
                        await kill_one(cluster, rng)
                assert await client.gather(futures) == [x + 1 for x in range(NTASKS)]
                del futures, fut

                width, depth = TREE
                root = client.submit(tree, width, depth, pure=False)
                state = cluster.scheduler.state
                for i in range(TREE_KILLS):
                    # progress, not time: kill once the tree has grown this far
                    grown = (i + 1) * tree_size(width, depth) // (TREE_KILLS + 2)
                    await cluster.scheduler.wait_for(
                        lambda grown=grown, root=root: len(state.tasks) >= grown or root.done())
                    if root.done():
                        break
                    await kill_one(cluster, rng)
                assert await root == tree_size(width, depth)
                del root
                await no_task_left(cluster)
                assert sum(n.restarts for n in cluster.nannies) >= 1


async def test_frozen_worker_thawed_late_results_do_not_replace_or_duplicate():
    n = 400
    with trio.fail_after(120):
        async with trioflow.open_local_cluster(2, 2, processes=True, peer_timeout=2,
                                               allowed_failures=100) as cluster:
            async with trioflow.AsyncClient(cluster.address) as client:
                state = cluster.scheduler.state
                futures = client.map(slow_inc, range(n), pure=False)
                frozen = None
                seen: dict[str, int] = {}
                async for fut in trioflow.as_completed(futures):
                    assert fut.key not in seen
                    seen[fut.key] = await fut
                    if frozen is None and len(seen) == n // 4:
                        busy = next(w for w in state.workers.values() if w.processing)
                        nanny = next(x for x in cluster.nannies if x.name == busy.name)
                        frozen = nanny
                        os.kill(nanny.process.pid, signal.SIGSTOP)
                        # thaw only after the scheduler dropped it for silence: its runs
                        # went elsewhere, and whatever it sends late must change nothing
                        await cluster.scheduler.wait_for(lambda w=busy: w.id not in state.workers)
                        os.kill(nanny.process.pid, signal.SIGCONT)
                assert frozen is not None
                assert sorted(seen.values()) == [x + 1 for x in range(n)]
                assert await client.gather(futures) == [x + 1 for x in range(n)]
                del futures, fut
                await no_task_left(cluster)
                # the thawed worker finds its connection closed, exits ("restart me")
                # and its nanny starts a fresh one under the same name
                await cluster.scheduler.wait_for(lambda: len(state.workers) == 2)
                assert frozen.exits and frozen.exits[-1] == 75


async def test_client_killed_mid_run_frees_its_work_and_the_next_is_served(tmp_path):
    script = tmp_path / "client.py"
    script.write_text(
        "import sys, trioflow\n"
        "from trioflow.testing.chaos import slow_inc\n"
        "c = trioflow.Client(sys.argv[1])\n"
        "futures = c.map(slow_inc, range(2000), pure=False)\n"
        "print(futures[0].result(), flush=True)\n"
        "input()  # until killed\n")
    with trio.fail_after(120):
        async with trioflow.open_local_cluster(2, 2, processes=True) as cluster:
            state = cluster.scheduler.state
            proc = await trio.lowlevel.open_process(
                [sys.executable, str(script), cluster.address],
                stdout=subprocess.PIPE, stdin=subprocess.PIPE)
            try:
                assert (await proc.stdout.receive_some(100)).strip() == b"1"
                assert len(state.tasks) > 100  # most of its work is still to do
                proc.kill()
                await proc.wait()
                # its queued work never runs; what was running ends and is dropped
                await no_task_left(cluster)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            async with trioflow.AsyncClient(cluster.address) as client:
                assert await client.gather(client.map(inc, range(50))) == list(range(1, 51))


async def test_scheduler_killed_clients_fail_and_workers_exit_in_bounded_time():
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trioflow.cli", "scheduler", "--port", "0"],
        stdout=subprocess.PIPE)
    worker = None
    try:
        with trio.fail_after(60):
            address = (await proc.stdout.receive_some(200)).decode().strip()
            worker = await trio.lowlevel.open_process(
                [sys.executable, "-m", "trioflow.cli", "worker", address, "--nworkers", "2",
                 "--death-timeout", "2"])
            async with trioflow.AsyncClient(address) as client:
                await client.wait_for_workers(2, timeout=30)
                pending = client.map(slow_inc, range(500), pure=False)
                await pending[0]
                proc.kill()
                with pytest.raises(trioflow.ClientClosedError, match="lost the scheduler"):
                    await client.gather(pending)
            # each worker gives up after --death-timeout; their supervisor then stops
            assert await worker.wait() == 1
    finally:
        for p in (proc, worker):
            if p is not None and p.returncode is None:
                p.kill()
                await p.wait()


SCHEDULER_ATTACKS = [
    ["partial_request"], ["request"], ["request", "read_upgrade"],
    ["request", "read_upgrade", "garbage"], ["request", "read_upgrade", "partial_frame"],
    ["request", "read_upgrade", "hello", "garbage"], ["garbage"],
    ["request", "read_upgrade", "worker_hello", "partial_frame"],
]
BULK_ATTACKS = [["bulk_hello_no_token"], ["bulk_huge_header"], ["bulk_partial_header"],
                ["garbage"], ["bulk_put_128mb"]]


async def test_hostile_traffic_on_both_ports_while_honest_clients_run():
    from trioflow.testing.hostile import flood, logged_errors, run_steps

    rng = random.Random(1)
    n = 10_000 if LONG else 1_000
    attacks = {"scheduler": 0, "bulk": 0}
    with trio.fail_after(300 if LONG else 90), logged_errors() as errors:
        async with trioflow.open_local_cluster(2, 2, processes=False) as cluster:
            port = int(cluster.address.rsplit(":", 1)[1])
            bulk_ports = [int(w.data_address.rsplit(":", 1)[1]) for w in cluster.workers]
            done = trio.Event()

            async def attack():
                while not done.is_set():
                    end = rng.choice(["reset", "close"])
                    if rng.random() < 0.5:
                        await run_steps(port, rng.choice(SCHEDULER_ATTACKS), end)
                        attacks["scheduler"] += 1
                    else:
                        await run_steps(rng.choice(bulk_ports), rng.choice(BULK_ATTACKS), end)
                        attacks["bulk"] += 1
                    if rng.random() < 0.05:
                        await flood(port, 20, end=end)

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(attack)
                try:
                    async with trioflow.AsyncClient(cluster.address) as client:
                        small = client.map(inc, range(n), pure=False)
                        big = [client.submit(bytes, 200_000, pure=False) for _ in range(20)]
                        assert await client.gather(small) == [x + 1 for x in range(n)]
                        assert [len(b) for b in await client.gather(big)] == [200_000] * 20
                        del small, big
                finally:
                    done.set()
            await no_task_left(cluster)
    assert attacks["scheduler"] > 0 and attacks["bulk"] > 0
    assert not errors, [r.getMessage() for r in errors]
