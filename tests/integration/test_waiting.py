"""wait / wait_async, as_completed and compute / compute_async: one name per blocking
style, and an ``async for`` that never yields inside a cancel scope (issue 11, item 7).

Before, the async ``as_completed`` was an async generator yielding inside
``trio.fail_after``: a ``break`` out of ``async for``, or ``FIRST_COMPLETED`` (which
breaks), corrupted the cancel scope stack, and on ``timeout=`` a ``trio.Cancelled`` hit
the loop body. Every test here runs under the conftest's ``trio.fail_after``, whose exit
is where a corrupted stack shows.
"""

import gc
import warnings
import weakref

import pytest
import trio

import trioflow

from .conftest import cluster_client
from .tasks import GATE, inc, wait_gate


@pytest.fixture
def gate():
    GATE.clear()
    yield GATE
    GATE.set()  # never leave a worker thread blocked


# ---------------------------------------------------------------------- async main


async def test_break_out_of_async_as_completed_then_await_more(gate):
    async with cluster_client(2, 1) as (_, client):
        blocked = client.submit(wait_gate)
        fs = client.map(inc, range(5))
        async for f in trioflow.as_completed([blocked, *fs]):
            first = await f
            break
        assert first in range(1, 6)
        # the task's cancel scopes are intact: more waits, a timeout, a checkpoint
        assert await client.gather(fs) == [1, 2, 3, 4, 5]
        with trio.move_on_after(0.05) as scope:
            await blocked
        assert scope.cancelled_caught
        gate.set()
        seen = [await f async for f in trioflow.as_completed([blocked, *fs])]
        assert sorted(seen, key=str) == [*range(1, 6), "gate"]


async def test_wait_async_first_completed_in_async_main(gate):
    async with cluster_client(2, 1) as (_, client):
        blocked = client.submit(wait_gate)
        fast = client.submit(inc, 1)
        result = await trioflow.wait_async([blocked, fast], return_when="FIRST_COMPLETED")
        assert isinstance(result, trioflow.DoneAndNotDoneFutures)
        assert result.done == {fast} and result.not_done == {blocked}
        await trio.sleep(0.01)  # no corrupted scope left behind
        gate.set()
        done, not_done = await trioflow.wait_async([blocked, fast])
        assert done == {blocked, fast} and not not_done
        assert await trioflow.wait_async([]) == (set(), set())


async def test_async_as_completed_timeout_raises_timeout_error_cleanly(gate):
    async with cluster_client(2, 1) as (_, client):
        blocked = client.submit(wait_gate)
        fast = client.submit(inc, 1)
        await fast
        body = []
        with pytest.raises(TimeoutError):
            async for f in trioflow.as_completed([blocked, fast], timeout=0.2):
                # outlives the timeout: it must not be cancelled, the timeout belongs to
                # the waits of the iteration, not to the loop body
                await trio.sleep(0.3)
                body.append(await f)
        assert body == [2]
        with pytest.raises(TimeoutError):
            await trioflow.wait_async([blocked], timeout=0.05)
        with pytest.raises(TimeoutError):
            await trioflow.wait_async([blocked], timeout=0.05, return_when="FIRST_COMPLETED")
        gate.set()
        assert await blocked == "gate"


async def test_async_as_completed_with_results_and_add():
    async with cluster_client(2, 1) as (_, client):
        ac = trioflow.as_completed(client.map(inc, range(3)), with_results=True)
        got = []
        async for future, value in ac:
            assert future.done()
            got.append(value)
            if len(got) == 1:
                ac.add(client.submit(inc, 10))
        assert sorted(got) == [1, 2, 3, 11] and ac.is_empty()
        with pytest.raises(TypeError, match="Futures"):
            trioflow.as_completed([1, 2, 3])


async def test_deprecated_dual_calls_warn_and_still_work():
    @trioflow.delayed
    def plus(a, b):
        return a + b

    async with cluster_client(2, 1) as (_, client):
        fs = client.map(inc, range(3))
        with pytest.warns(DeprecationWarning, match="wait_async"):
            awaitable = trioflow.wait(fs)
        done, not_done = await awaitable
        assert done == set(fs) and not not_done
        with pytest.warns(DeprecationWarning, match="compute_async"):
            awaitable = trioflow.compute(plus(1, 2), plus(3, 4))
        assert await awaitable == (3, 7)
        with pytest.warns(DeprecationWarning, match="compute_async"):
            awaitable = plus(plus(1, 2), 3).compute()
        assert await awaitable == 6
        # the new names do not warn
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            assert await trioflow.compute_async(plus(1, 2), plus(3, 4)) == (3, 7)
            assert await plus(plus(1, 2), 3).compute_async() == 6
            assert (await trioflow.wait_async(fs)).done == set(fs)


async def test_sync_forms_from_a_thread_block_and_return(gate):
    @trioflow.delayed
    def plus(a, b):
        return a + b

    def in_thread(blocked, fs):
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            done, not_done = trioflow.wait(fs)
            assert done == set(fs) and not not_done
            first = trioflow.wait([blocked, *fs], return_when="FIRST_COMPLETED")
            assert first.not_done == {blocked} and first.done == set(fs)
            with pytest.raises(TimeoutError):
                trioflow.wait([blocked], timeout=0.05)
            with pytest.raises(TimeoutError):
                list(trioflow.as_completed([blocked], timeout=0.05))
            values = sorted(v for _, v in trioflow.as_completed(fs, with_results=True))
            computed = trioflow.compute(plus(1, 2), plus(3, 4))
            one = plus(plus(1, 2), 3).compute()
        return values, computed, one

    async with cluster_client(2, 1) as (_, client):
        blocked = client.submit(wait_gate)
        fs = client.map(inc, range(3))
        values, computed, one = await trio.to_thread.run_sync(in_thread, blocked, fs)
        assert values == [1, 2, 3] and computed == (3, 7) and one == 6
        # on the loop thread the blocking `for` would hang the loop: it says so instead
        with pytest.raises(RuntimeError, match="async for"):
            for _ in trioflow.as_completed(fs):
                pass
        gate.set()


async def test_as_completed_does_not_keep_its_futures_alive():
    # issue 14: a class made per watched future sat in a reference cycle with it, so
    # futures (and their results on the workers) lived until the next gc.collect()
    gc.disable()
    try:
        async with cluster_client(2, 1) as (_, client):
            fs = client.map(inc, range(5))
            refs = [weakref.ref(f) for f in fs]
            assert sorted([await f async for f in trioflow.as_completed(fs)]) == [1, 2, 3, 4, 5]
            fs = None
            assert all(r() is None for r in refs)

            # given up on while some are pending too, in both iteration styles (by a
            # break: an exception's traceback holds the frames, and so the futures, for
            # as long as the exception lives, wherever the caller keeps it)
            GATE.clear()
            pending = [client.submit(wait_gate), client.submit(inc, 1)]
            refs = [weakref.ref(f) for f in pending]
            async for _ in trioflow.as_completed(pending):
                break

            def first(futures):
                for f in trioflow.as_completed(futures):
                    return f.result()

            assert await trio.to_thread.run_sync(first, pending) == 2
            _ = None
            pending = None
            assert all(r() is None for r in refs)
            GATE.set()
    finally:
        GATE.set()
        gc.enable()


# ---------------------------------------------------------------------- inside tasks


async def break_in_task(n):
    client = trioflow.get_client()
    fs = client.map(abs, range(n))
    async for f in trioflow.as_completed(fs):
        first = await f
        break
    with trio.move_on_after(5):
        rest = await client.gather(fs)
    return first in rest and sum(rest)


async def first_completed_in_task():
    client = trioflow.get_client()
    blocked = client.submit(wait_gate)
    fast = client.submit(abs, -3)
    done, not_done = await trioflow.wait_async([blocked, fast], return_when="FIRST_COMPLETED")
    return [f.key for f in done] == [fast.key] and not_done == {blocked}


async def timeout_in_task():
    client = trioflow.get_client()
    blocked = client.submit(wait_gate)
    try:
        async for _ in trioflow.as_completed([blocked], timeout=0.2):
            return "no timeout"
    except TimeoutError:
        await trio.sleep(0)  # not cancelled: the scope of the wait is gone
        return "timeout"
    return "empty"


async def test_async_as_completed_inside_tasks_is_safe(gate):
    async with cluster_client(1, 4) as (_, client):
        # one worker with 4 slots: the gated children of the last two tasks take two
        # until the end; each parent gives its slot back while it waits (so its fast
        # children can run) and takes one again after
        assert await client.submit(break_in_task, 6) == 15
        assert await client.submit(first_completed_in_task) is True
        assert await client.submit(timeout_in_task) == "timeout"
        gate.set()


async def test_nothing_depends_on_the_thread_that_built_it():
    async with cluster_client(2, 1) as (cluster, client):
        # built in a thread, iterated with async for on the loop
        ac = await trio.to_thread.run_sync(trioflow.as_completed, client.map(inc, range(3)))
        assert sorted([await f async for f in ac]) == [1, 2, 3]

        # a blocking Client runs its own loop in a thread: its futures finish there, and
        # the async forms on this loop still wake up
        sync = await trio.to_thread.run_sync(trioflow.Client, cluster.address)
        try:
            fs = sync.map(inc, range(3))
            seen = [f async for f in trioflow.as_completed(fs)]
            assert {f.key for f in seen} == {f.key for f in fs}
            done, not_done = await trioflow.wait_async(sync.map(inc, range(3, 6)))
            assert len(done) == 3 and not not_done

            @trioflow.delayed
            def plus(a, b):
                return a + b

            # get_client() is the newest client, the blocking one: waited on in a thread
            assert await trioflow.compute_async(plus(1, 2)) == (3,)
        finally:
            await trio.to_thread.run_sync(sync.close)
