"""The futures API on real in-process clusters."""

import functools
import gc
import operator
import threading

import pytest
import trio

import trioflow

from .conftest import cluster_client
from .tasks import inc


def add(*xs):
    return sum(xs)


class Custom(Exception):
    def __init__(self, code):
        super().__init__(f"code {code}")
        self.code = code


def boom(code):
    raise Custom(code)


async def test_submit_map_gather_and_dependencies():
    async with cluster_client(2, 1) as (_, client):
        assert await client.submit(inc, 1) == 2
        futures = client.map(inc, range(50))
        assert await client.gather(futures) == list(range(1, 51))
        # futures as arguments, nested in containers, become dependencies
        total = client.submit(add, *futures[:3], key="total")
        nested = client.submit(lambda d: d["a"] + sum(d["b"]), {"a": futures[0], "b": (futures[1],)})
        assert await total == 6 and await nested == 3 and total.key == "total"
        assert await client.gather({"x": futures[0], "y": [futures[1]]}) == {"x": 1, "y": [2]}


async def test_exceptions_keep_their_type_and_traceback():
    async with cluster_client(1, 1) as (_, client):
        f = client.submit(boom, 7)
        with pytest.raises(Custom) as info:
            await f
        assert info.value.code == 7
        assert "in boom" in str(info.value.__cause__)  # the remote traceback
        # dependents fail with the same error
        with pytest.raises(Custom):
            await client.submit(inc, f)


async def test_unrebuildable_exception_becomes_task_failed():
    def raise_local():
        class Local(Exception):
            def __reduce__(self):
                raise TypeError("no")

        raise Local("local only")

    async with cluster_client(1, 1) as (_, client):
        with pytest.raises(trioflow.TaskFailed, match="local only"):
            await client.submit(raise_local)


async def test_unpicklable_argument_fails_at_submit_naming_it():
    import threading

    lock = threading.Lock()

    def uses_lock(x):
        with lock:
            return x

    async with cluster_client(1, 1) as (_, client):
        with pytest.raises(trioflow.SerializationError, match=r"__closure__\['lock'\]"):
            client.submit(uses_lock, 1)
        with pytest.raises(trioflow.SerializationError, match=r"args\[1\]\['k'\]"):
            client.submit(add, 1, {"k": lock})
        assert await client.submit(inc, 1) == 2  # the client is fine afterwards


async def test_large_results_stay_on_workers_and_are_fetched():
    async with cluster_client(2, 1, inline_limit=1000) as (cluster, client):
        big = client.submit(lambda: b"x" * 100_000, workers=["worker-0"])
        assert await client.submit(len, big, workers=["worker-1"]) == 100_000  # worker->worker
        assert len(await big) == 100_000  # fetched for the client through the scheduler
        assert big.key not in {k for k, t in cluster.scheduler.state.tasks.items() if t.inline}


async def test_scatter_and_pure_keys():
    async with cluster_client(2, 1) as (_, client):
        [data] = await client.scatter([list(range(10))])
        assert await client.submit(sum, data) == 45
        a = client.submit(operator.add, 1, 2, pure=True)
        b = client.submit(operator.add, 1, 2, pure=True)
        c = client.submit(operator.add, 1, 2)
        assert a.key == b.key != c.key
        assert await a == await b == await c == 3


async def test_wait_and_as_completed():
    async with cluster_client(2, 1) as (_, client):
        fs = client.map(inc, range(10))
        done, pending = await trioflow.wait_async(fs)
        assert len(done) == 10 and not pending
        seen = [await f async for f in trioflow.as_completed(client.map(inc, range(5)))]
        assert sorted(seen) == [1, 2, 3, 4, 5]


GATE = threading.Event()


def wait_gate():
    # module-level: pickled by reference, so the in-process worker sees the same Event
    assert GATE.wait(30)
    return "done"


async def test_cancel_queued_work():
    GATE.clear()
    async with cluster_client(1, 1) as (_, client):
        first = client.submit(wait_gate)
        queued = client.map(inc, range(20))
        client.cancel(queued)
        GATE.set()
        assert await first == "done"
        with pytest.raises(trioflow.CancelledError):
            await queued[-1]


async def test_async_tasks_and_delayed():
    async def double(x):
        await trio.sleep(0)
        return 2 * x

    async with cluster_client(2, 1) as (_, client):
        assert await client.submit(double, 21) == 42

        @trioflow.delayed
        def plus(a, b):
            return a + b

        tree = plus(plus(1, 2), plus(3, 4))
        assert await trioflow.compute_async(tree) == (10,)


async def test_tasks_submitted_before_any_worker_joins():
    # the first frame a new worker gets holds its Welcome *and* the tasks waiting for it
    from trioflow.net.scheduler_server import SchedulerServer
    from trioflow.net.worker_node import WorkerNode

    async with trio.open_nursery() as nursery:
        server = SchedulerServer()
        address = await nursery.start(server.serve, "127.0.0.1", 0)
        async with trioflow.AsyncClient(address) as client:
            futures = client.map(inc, range(10))
            await server.wait_for(lambda: len(server.state.tasks) == 10)
            node = WorkerNode(address, nthreads=1)
            nursery.start_soon(node.serve)
            assert await client.gather(futures) == list(range(1, 11))
        nursery.cancel_scope.cancel()


async def test_releases_are_batched_and_a_key_wanted_again_survives():
    import gc

    async with cluster_client(1, 1) as (cluster, client):
        conn = client._session.conn
        conn.heartbeat_interval = 3600  # count only what the test sends (a slow CI box
        futures = client.map(inc, range(200))  # would otherwise add a heartbeat or two)
        await client.gather(futures)
        before = conn.messages_sent
        del futures
        gc.collect()
        await cluster.scheduler.wait_for(lambda: not cluster.scheduler.state.tasks)
        assert conn.messages_sent - before == 1  # one ReleaseKeys for 200 futures
        # a pure key dropped and asked for again before the release went out
        f = client.submit(inc, 41, pure=True)
        assert await f == 42
        key = f.key
        del f
        gc.collect()
        g = client.submit(inc, 41, pure=True)
        assert g.key == key and await g == 42


async def test_another_trio_loop_awaits_a_blocking_clients_futures():
    """A blocking Client's loop runs in its own thread; this test's loop awaits its
    futures, which must not set the Client loop's events from the wrong thread."""
    client = await trio.to_thread.run_sync(functools.partial(
        trioflow.Client, workers=1, threads_per_worker=1, processes=False))
    try:
        small = client.submit(inc, 1)
        large = client.submit(bytes, 300_000)  # over the inline limit: fetched over bulk
        assert await small == 2
        assert len(await large) == 300_000
    finally:
        await trio.to_thread.run_sync(client.close)


def echo(*args):
    return args


async def test_scalar_arguments_and_flat_gathers_keep_types_and_shapes():
    # scalar arguments take submit's shortcut (no search for futures or large values);
    # lists and tuples of futures take gather's (no walk): both must keep what they are
    scalars = (1, 2.5, "s", True, None, 3j, 2**80)
    async with cluster_client(1, 1) as (_, client):
        back = await client.submit(echo, *scalars)
        assert back == scalars and [type(x) for x in back] == [type(x) for x in scalars]
        ok, bad = client.submit(inc, 1), client.submit(boom, 1)
        assert await client.gather([ok, ok]) == [2, 2]
        assert await client.gather((ok,)) == (2,)
        assert await client.gather((ok, bad, ok), errors="skip") == (2, 2)
        assert await client.gather([bad, ok], errors="skip") == [2]
        assert await client.gather([ok, 5]) == [2, 5]  # (not only futures: walked)
        with pytest.raises(Custom):
            await client.gather((ok, bad))


async def test_held_futures_keep_no_per_key_containers_for_the_gc():
    # A client holding many futures pays the cyclic GC for every tracked object they
    # keep alive: each full collection walks them all. A key's state, once done, must
    # keep only shared tracked objects (its status), whether it was waited on, had a
    # callback, or neither: no waiter list per key.
    with trio.fail_after(30):
        async with cluster_client(1, 1) as (_, client):
            futures = client.map(inc, range(300))
            waited = futures[:100]
            for f in futures[100:200]:
                f.add_done_callback(lambda _f: None)
            assert await client.gather(waited) == list(range(1, 101))
            await client.gather(futures)
            tracked = {id(r) for f in futures for r in gc.get_referents(f._state)
                       if gc.is_tracked(r)}
            assert len(tracked) <= 3, f"{len(tracked)} tracked objects for 300 keys"
