"""Slots kept free for seceded runs (``WorkerState.secede`` with ``reserve``), on real
clusters:

* a parent that secedes (``worker_client``) and then waits runs its children on its
  own thread: the slot it gave back stays free until its wait begins, so no child
  starts on another thread before the parent can take it;
* a run that secedes and then blocks on something that is not a wait on tasks (here a
  ``threading.Event`` that a queued task sets) holds up the runs queued behind it only
  until the worker's clock fills the kept slot (``KEPT_SLOT_TICK``), not forever;
* a chain of seceded waits far deeper than one thread's stack can nest (each child
  would run on its parent's thread) still finishes: a thread nests at most
  ``MAX_HELPING_NESTING`` runs, the rest go to other threads.

``cluster_client`` checks on exit that every ledger, its slot tokens and the scheduler
agree. Gates are ``threading.Event``s shared with the in-process clusters; their waits
time out only so a broken build fails.
"""

from __future__ import annotations

import threading

import trio

import trioflow

from .conftest import cluster_client

_GATES: dict[str, threading.Event] = {}


def thread_name() -> str:
    return threading.current_thread().name


def parent_of_children(n: int) -> tuple[str, list[str]]:
    with trioflow.worker_client() as client:
        children = client.gather([client.submit(thread_name, pure=False) for _ in range(n)])
    return threading.current_thread().name, children


async def test_a_seceded_parent_runs_the_children_it_waits_on_on_its_own_thread():
    async with cluster_client(1, 1) as (_, client):
        with trio.fail_after(30):
            parent, children = await client.submit(parent_of_children, 4)
        assert children == [parent] * 4


def secedes_and_blocks(name: str) -> bool:
    trioflow.secede()
    opened = _GATES[name].wait(30)
    trioflow.rejoin()
    return opened


def opens(name: str) -> int:
    _GATES[name].set()
    return 1


async def test_a_slot_kept_for_a_run_that_blocks_elsewhere_is_filled_by_the_clock():
    _GATES["clock"] = threading.Event()
    async with cluster_client(1, 1) as (cluster, client):
        with trio.fail_after(10):
            blocker = client.submit(secedes_and_blocks, "clock")
            state = cluster.scheduler.state
            # it has seceded: its slot is free for the scheduler, kept on the worker
            await cluster.scheduler.wait_for(
                lambda: any(t.key == blocker.key for t in state.seceded.values()))
            # queued on the same worker behind the kept slot; only the clock lets it
            # start, and it is what the blocker waits for
            assert await client.submit(opens, "clock") == 1
            assert await blocker is True


def chain(n: int) -> int:
    if n == 0:
        return 0
    with trioflow.worker_client() as client:
        return client.submit(chain, n - 1, pure=False).result() + 1


def chain_seceding(n: int) -> int:
    if n == 0:
        return 0
    child = trioflow.get_client().submit(chain_seceding, n - 1, pure=False)
    trioflow.secede()
    value = child.result()
    trioflow.rejoin()
    return value + 1


async def test_a_chain_deeper_than_a_threads_stack_finishes():
    # (found in review: 120 levels nested on one thread hit the recursion limit inside
    # a ledger event, and the slot tokens lost step with the ledger)
    async with cluster_client(1, 1) as (cluster, client):
        with trio.fail_after(60):
            assert await client.submit(chain, 200, pure=False) == 200
            assert await client.submit(chain_seceding, 200, pure=False) == 200
        assert cluster.workers[0].statistics()["peak_threads"] > 1
