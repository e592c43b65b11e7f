"""Children placed on their parent's worker (``TaskPlaced``), on real clusters.

A child submitted from a running task is queued on that task's worker at once; the
scheduler hears of it in the worker's ordered stream and stays the authority of record.
These tests pin what must still hold: idle workers steal queued children, a steal that
races a child's start never runs it twice (run ids), a dead worker loses no result,
failures and cancellation reach the parent, and deadlocks of placed children only are
still reported.

Gates are ``threading.Event``s in this module: the clusters here run in this process
(except the kill -9 test), so a task and the test share them. A gate's wait has a long
timeout only so that a broken build fails its assertion instead of hanging.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading

import pytest

import trioflow
from trioflow.core import fold
from trioflow.engine.context import current_run

from .conftest import cluster_client
from .tasks import fib_no_secede

_GATES: dict[str, threading.Event] = {}
#: (what, worker, run id) of every run of the recording tasks, per test token
_RAN: dict[str, list[tuple[str, str, int]]] = {}
_tokens = itertools.count()


def _token() -> str:
    token = f"t{next(_tokens)}"
    _GATES[token] = threading.Event()
    _RAN[token] = []
    return token


def _here() -> str:
    """The worker this sync task runs on (its threads are named after it)."""
    return threading.current_thread().name.removeprefix("trioflow-").rsplit("-", 1)[0]


def _record(token: str, what: str) -> None:
    ctx = current_run()
    assert ctx is not None
    _RAN[token].append((what, _here(), ctx.run.run_id))


def hold(token: str, what: str = "hold") -> str:
    _record(token, what)
    if not _GATES[token].wait(20):
        raise RuntimeError("the gate never opened")
    return _here()


def open_gate(token: str, what: str = "open") -> str:
    _record(token, what)
    _GATES[token].set()
    return _here()


def placed_on(cluster, worker_name: str) -> int:
    """How many children the scheduler recorded as placed by ``worker_name``."""
    return sum(w.placed for w in cluster.scheduler.state.workers.values()
               if w.name == worker_name)


# --------------------------------------------------------------------------- stealing


def parent_of_gated_children(token: str, n: int):
    with trioflow.worker_client() as client:
        # the slot given back above goes to the first child at once: it holds it until a
        # sibling opens the gate, and its siblings are queued behind it on this worker
        futures = [client.submit(hold, token)]
        futures += [client.submit(open_gate, token) for _ in range(n)]
        where = client.gather(futures)
    return _here(), where


async def test_a_child_is_stolen_while_its_parent_waits():
    async with cluster_client(2, 1) as (cluster, client):
        token = _token()
        parent_worker, where = await client.submit(parent_of_gated_children, token, 8)
        # every child was placed on the parent's worker, whose one slot the first held:
        # only a steal can have run the child that opened the gate
        assert placed_on(cluster, parent_worker) == 9
        status = await client.status()  # the count is what `status` shows too
        assert {w["name"]: w["placed"] for w in status["workers"]}[parent_worker] == 9
        assert where[0] == parent_worker
        assert set(where[1:]) - {parent_worker}, where


async def test_a_steal_that_races_a_start_leaves_the_started_run_alone():
    async with cluster_client(2, 1) as (_, client):
        token = _token()
        # hold starts as soon as it is placed; then open is queued behind it. The idle
        # worker's steal asks for both (the scheduler cannot tell which one started):
        # hold stays, as run 1 here; open comes back and runs elsewhere as run 2
        parent_worker, where = await client.submit(parent_of_gated_children, token, 1)
        ran = sorted(_RAN[token])
        assert ran == [("hold", parent_worker, 1), ("open", where[1], 2)], ran
        assert where[1] != parent_worker


def leaf(token: str, i: int) -> int:
    _record(token, str(i))
    return i


def parent_of_many(token: str, n: int) -> int:
    with trioflow.worker_client() as client:
        return sum(client.gather([client.submit(leaf, token, i) for i in range(n)]))


async def test_children_run_exactly_once_while_idle_workers_steal():
    async with cluster_client(2, 1) as (_, client):
        for _ in range(10):
            token = _token()
            assert await client.submit(parent_of_many, token, 100) == sum(range(100))
            counts: dict[str, int] = {}
            for what, _worker, _run_id in _RAN[token]:
                counts[what] = counts.get(what, 0) + 1
            assert counts == {str(i): 1 for i in range(100)}


# --------------------------------------------------------------------------- worker loss


def square(i: int) -> int:
    return i * i


def kill_this_worker_once(marker: str) -> int:
    """SIGKILL the worker running this, the first time, with children queued here."""
    if os.path.exists(marker):
        return 0
    ctx = current_run()
    assert ctx is not None
    queued = ctx.host.ledger.counts()["queued"]  # type: ignore[attr-defined]
    if queued == 0:
        raise AssertionError("nothing was queued on this worker: the test proves nothing")
    with open(marker, "w") as f:
        f.write(str(queued))
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


def parent_killed_with_queued_children(marker: str, n: int) -> int:
    # every child is placed while this run still holds the slot (a child placed in a
    # free slot starts at once, on another thread, and would race the placements)
    client = trioflow.get_client()
    futures = [client.submit(square, i) for i in range(n)]
    # placed last but run first (higher priority): it kills the worker while the
    # squares are still queued there
    futures.append(client.submit(kill_this_worker_once, marker, priority=10))
    trioflow.secede()
    try:
        return sum(client.gather(futures))
    finally:
        trioflow.rejoin()


async def test_the_parents_worker_killed_with_queued_children_loses_nothing(tmp_path):
    marker = str(tmp_path / "killed")
    async with cluster_client(2, 1, processes=True) as (_, client):
        total = await client.submit(parent_killed_with_queued_children, marker, 60)
        assert total == sum(i * i for i in range(60))
        assert os.path.exists(marker) and int(open(marker).read()) > 0
        status = await client.status()
        assert len(status["workers"]) == 1


# --------------------------------------------------------------------------- failures


_FAILED_ONCE: set[str] = set()


def flaky(token: str) -> str:
    if token not in _FAILED_ONCE:
        _FAILED_ONCE.add(token)
        raise ValueError("the first run fails")
    return "second run"


def bad() -> None:
    raise ValueError("child failed")


def parent_of_failing_children(token: str):
    with trioflow.worker_client() as client:
        retried = client.submit(flaky, token, retries=1).result()
        try:
            client.submit(bad).result()
        except ValueError as exc:
            failed = str(exc)
    return retried, failed


async def test_a_placed_child_that_fails_is_retried_or_reaches_its_parent():
    async with cluster_client(1, 1) as (cluster, client):
        retried, failed = await client.submit(parent_of_failing_children, _token())
        assert retried == "second run" and failed == "child failed"
        assert placed_on(cluster, cluster.workers[0].name) >= 2


def parent_cancelling_children(token: str):
    with trioflow.worker_client() as client:
        running = client.submit(hold, token, "running")  # takes the one slot at once
        queued = client.submit(open_gate, token, "queued")  # waits behind it
        client.cancel([queued, running])
        outcomes = []
        for fut in (queued, running):
            try:
                fut.result()
                outcomes.append("ran")
            except trioflow.CancelledError:
                outcomes.append("cancelled")
        _GATES[token].set()  # the running child may end now; its result is dropped
    return outcomes


async def test_a_placed_child_that_is_cancelled_never_runs_if_queued():
    # one worker: nothing steals the queued child before the cancel reaches it
    async with cluster_client(1, 1) as (cluster, client):
        token = _token()
        assert await client.submit(parent_cancelling_children, token) == ["cancelled"] * 2
        assert [what for what, _, _ in _RAN[token]] == ["running"]
        assert placed_on(cluster, cluster.workers[0].name) == 2


# --------------------------------------------------------------------------- deadlocks


@pytest.mark.parametrize("shape", [(1, 1), (2, 1)], ids=["1x1", "2x1"])
async def test_a_deadlock_of_placed_children_only_is_reported(shape):
    async with cluster_client(*shape) as (cluster, client):
        with pytest.raises(trioflow.DeadlockError):
            await client.submit(fib_no_secede, 3)
        assert sum(w.placed for w in cluster.scheduler.state.workers.values()) >= 2
        assert len(cluster.scheduler.state.deadlocks) == 1


# ----------------------------------------------------------- folded slot reports


def fib_wc(n: int) -> int:
    if n < 2:
        return n
    with trioflow.worker_client() as client:
        a, b = client.submit(fib_wc, n - 1), client.submit(fib_wc, n - 2)
        return sum(client.gather([a, b]))


def parent_of_one_held_child(token: str) -> str:
    with trioflow.worker_client() as client:
        return client.submit(hold, token).result()


async def test_the_worker_folds_for_a_scheduler_that_applies_folds_and_its_view_stays_true():
    async with cluster_client(1, 1) as (cluster, client):
        (node,) = cluster.workers
        assert node.conn.fold is fold.fold  # the Welcome said so
        token = _token()
        future = client.submit(parent_of_one_held_child, token)
        state = cluster.scheduler.state
        # while the child holds the slot, the scheduler counts the parent as seceded and
        # the slot as the child's: the Seceded arrived, whether folded or on its own
        await cluster.scheduler.wait_for(
            lambda: future.key in state.seceded and len(state.tasks) == 2)
        assert state.workers[node.peer_id].occupying == 1
        assert future.key in state.seceded
        _GATES[token].set()
        assert await future == node.name


@pytest.mark.parametrize("folding", [True, False], ids=["folded", "separate"])
async def test_recursion_leaves_the_scheduler_exact_with_reports_folded_or_separate(folding):
    # cluster_client checks on exit that every worker's ledger, its limiter and the
    # scheduler's occupying/blocked counts are back to zero: a folded report dropped or
    # applied twice would leave them off
    async with cluster_client(2, 1) as (cluster, client):
        for node in cluster.workers:
            if not folding:
                node.conn.fold = None  # as towards an older scheduler
        assert await client.submit(fib_wc, 12) == 144
        assert not cluster.scheduler.state.seceded
