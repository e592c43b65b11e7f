"""Real clusters on 127.0.0.1 (port 0). Every test runs under trio.fail_after."""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading

import pytest
import trio

import trioflow

#: No integration test may take longer than this; a hang is a failure, not a stuck CI.
DEADLINE = 60


@contextlib.asynccontextmanager
async def cluster_client(workers=2, threads=1, **options):
    """An in-process cluster and an AsyncClient on it; checks slot accounting on exit."""
    async with trioflow.open_local_cluster(workers, threads, **options) as cluster:
        async with trioflow.AsyncClient(cluster.address) as client:
            yield cluster, client
        await quiesce(cluster)
        check_slots(cluster)


async def quiesce(cluster) -> None:
    """Wait until no run is left on any worker (tasks that were cancelled finish), and
    until the scheduler has heard about it (the last TaskFinished may be in flight)."""
    for node in cluster.workers:
        await node.wait_idle()
    state = cluster.scheduler.state
    await cluster.scheduler.wait_for(
        lambda: all(not w.processing for w in state.workers.values()))


def check_slots(cluster) -> None:
    """The ledger, the limiter and the scheduler's view agree on every worker."""
    state = cluster.scheduler.state
    for node in cluster.workers:
        node.ledger.check()
        assert node.limiter.borrowed_tokens == node.ledger.holding == 0, node.statistics()
        # the slots are a trio.CapacityLimiter moved under the ledger's lock from any
        # thread, which is safe only while no Trio task waits on it (worker_ledger.py)
        assert isinstance(node.limiter.limiter, trio.CapacityLimiter)
        assert node.limiter.limiter.statistics().tasks_waiting == 0
        record = state.workers[node.peer_id]
        assert record.occupying == 0 and record.blocked == 0 and not record.processing


def pytest_collection_modifyitems(items):
    """Run every async test body under trio.fail_after(DEADLINE).

    (A cancel scope in a pytest-trio fixture does not cover the test: fixtures run as
    their own tasks. So the deadline wraps the test function itself.)
    """
    for item in items:
        fn = getattr(item, "obj", None)
        if inspect.iscoroutinefunction(fn) and not getattr(fn, "_has_deadline", False):
            item.obj = _with_deadline(fn)


def _with_deadline(fn):
    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        with trio.fail_after(DEADLINE):
            return await fn(*args, **kwargs)

    wrapper._has_deadline = True
    return wrapper


@pytest.fixture(autouse=True)
async def no_thread_leaks():
    before = {t for t in threading.enumerate()}
    yield
    # task threads are daemons that exit once their pool closes; give them a moment
    for t in threading.enumerate():
        if t not in before and t.name.startswith("trioflow-"):
            await trio.to_thread.run_sync(t.join, 5)
            assert not t.is_alive(), f"thread {t.name} leaked"
