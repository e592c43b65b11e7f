"""Tasks that launch tasks: every style of the reference document, plus async tasks."""

import pytest
import trio

import trioflow
from trioflow.engine import outbox as engine_outbox

from .conftest import cluster_client
from .tasks import fib_no_secede


@trioflow.delayed
def fib_delayed(n):
    if n < 2:
        return n
    a, b = trioflow.compute(fib_delayed(n - 1), fib_delayed(n - 2))
    return a + b


def fib_secede(n):
    if n < 2:
        return n
    client = trioflow.get_client()
    a, b = client.submit(fib_secede, n - 1), client.submit(fib_secede, n - 2)
    trioflow.secede()
    total = sum(client.gather([a, b]))
    trioflow.rejoin()
    return total


def fib_worker_client(n):
    if n < 2:
        return n
    with trioflow.worker_client() as client:
        a, b = client.submit(fib_worker_client, n - 1), client.submit(fib_worker_client, n - 2)
        return a.result() + b.result()


async def fib_async(n):
    if n < 2:
        return n
    client = trioflow.get_client()
    return sum(await client.gather([client.submit(fib_async, n - 1),
                                    client.submit(fib_async, n - 2)]))


STYLES = {
    "secede": fib_secede,
    "worker_client": fib_worker_client,
    "async": fib_async,
}
SHAPES = [(1, 1), (2, 1), (1, 2)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("style", list(STYLES))
async def test_fib_in_every_style(style, shape):
    async with cluster_client(*shape) as (_, client):
        assert await client.submit(STYLES[style], 10) == 55


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_fib_delayed(shape):
    async with cluster_client(*shape) as (_, _client):
        assert await trioflow.compute_async(fib_delayed(10)) == (55,)
        assert await fib_delayed(7).compute_async() == 13


async def test_recursion_much_deeper_than_the_slots():
    # a chain 60 deep on 1 slot: each level waits on the next
    def chain(n):
        if n == 0:
            return 0
        with trioflow.worker_client() as client:
            return client.submit(chain, n - 1).result() + 1

    async def achain(n):
        if n == 0:
            return 0
        return await trioflow.get_client().submit(achain, n - 1) + 1

    async with cluster_client(1, 1) as (cluster, client):
        assert await client.submit(chain, 60) == 60
        assert await client.submit(achain, 300) == 300
        stats = cluster.workers[0].statistics()
        assert stats["peak_threads"] <= 62  # one parked thread per level, no more


async def test_secede_less_fib_raises_deadlock_error_quickly():
    async with cluster_client(2, 1) as (cluster, client):
        start = trio.current_time()
        with pytest.raises(trioflow.DeadlockError) as info:
            await client.submit(fib_no_secede, 3)
        assert trio.current_time() - start < 1.0
        report = str(info.value)
        assert "holds a slot on worker" in report and "secede()" in report
        assert len(cluster.scheduler.state.deadlocks) == 1
        # the cluster is healthy afterwards
        assert await client.submit(fib_secede, 6) == 8


async def test_auto_secede_makes_the_naive_program_work():
    async with cluster_client(2, 1, auto_secede=True) as (_, client):
        assert await client.submit(fib_no_secede, 8) == 21


@pytest.mark.parametrize("cap", [0, 1, 4])
@pytest.mark.parametrize("fib", [fib_secede, fib_worker_client], ids=["secede", "worker_client"])
async def test_parked_thread_cap_never_deadlocks(cap, fib):
    # past the cap, waiting threads run deeper queued work themselves; threads then grow
    # with the depth of the tree (12), not with its size (465 tasks, 232 of which wait on
    # children). A child placed in the slot its parent gave back may start before that
    # parent reaches its wait and can help: it then gets a thread beyond the cap, counted
    # as overflow. How often depends on load (quiet: 5-8 threads in all; with the whole
    # suite, fuzzing and benchmarks on 2 cores, up to 53 were seen), so the checks are
    # the two that do not: every thread beyond the slot and the cap is counted, and
    # threads stay far below one per waiting task (what growth with the size would be).
    async with cluster_client(1, 1, max_parked_threads=cap) as (cluster, client):
        for _ in range(3):
            assert await client.submit(fib, 12) == 144
        stats = cluster.workers[0].statistics()
        assert stats["helped"] > 0
        assert stats["peak_threads"] <= 1 + cap + stats["overflow_threads"], stats
        assert stats["peak_threads"] <= 232 // 2, stats


async def test_secede_rejoin_misuse_is_a_clear_error():
    def twice():
        trioflow.secede()
        try:
            trioflow.secede()
        finally:
            trioflow.rejoin()

    def rejoin_first():
        trioflow.rejoin()

    async def async_secede():
        trioflow.secede()

    with pytest.raises(trioflow.NotInTaskError, match="inside a task"):
        trioflow.secede()
    with pytest.raises(trioflow.NotInTaskError):
        trioflow.rejoin()
    with pytest.raises(trioflow.NotInTaskError):
        with trioflow.worker_client():
            pass
    async with cluster_client(1, 1) as (_, client):
        with pytest.raises(trioflow.NotInTaskError, match="already seceded"):
            await client.submit(twice)
        with pytest.raises(trioflow.NotInTaskError, match="without secede"):
            await client.submit(rejoin_first)
        with pytest.raises(trioflow.NotInTaskError, match="async def"):
            await client.submit(async_secede)


async def test_nested_worker_client_and_exceptions_inside():
    def inner_fails():
        raise KeyError("inner")

    def nested():
        with trioflow.worker_client() as c1:
            with trioflow.worker_client() as c2:
                assert c1 is c2
                try:
                    c2.submit(inner_fails).result()
                except KeyError:
                    pass
            return c1.submit(abs, -3).result()

    async with cluster_client(1, 1) as (_, client):
        assert await client.submit(nested) == 3


async def test_fan_out_from_a_task():
    def fan(n):
        with trioflow.worker_client() as client:
            return sum(client.gather(client.map(abs, range(-n, 0))))

    async with cluster_client(2, 1) as (_, client):
        assert await client.submit(fan, 1000) == 500500


async def as_completed_async(n):
    client = trioflow.get_client()
    return sum([await f async for f in trioflow.as_completed(client.map(abs, range(n)))])


def as_completed_sync(n):
    client = trioflow.get_client()
    return sum(f.result() for f in trioflow.as_completed(client.map(abs, range(n))))


async def test_as_completed_inside_tasks():
    async with cluster_client(1, 1) as (_, client):
        # an async task gives its slot back while it waits: its children can run
        assert await client.submit(as_completed_async, 5) == 10
        # a sync task that waits without seceding on one slot is a deadlock, reported
        with pytest.raises(trioflow.DeadlockError):
            await client.submit(as_completed_sync, 5)
    async with cluster_client(1, 2) as (_, client):
        assert await client.submit(as_completed_sync, 5) == 10  # a second slot: fine


async def fib_concurrent(n):
    """Awaits its two children from two Trio tasks of its own, at the same time."""
    if n < 2:
        return n
    client = trioflow.get_client()
    a, b = client.submit(fib_concurrent, n - 1), client.submit(fib_concurrent, n - 2)
    results = {}

    async def fetch(name, future):
        results[name] = await future

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch, "a", a)
        nursery.start_soon(fetch, "b", b)
    return results["a"] + results["b"]


@pytest.mark.parametrize("shape", [(1, 1), (2, 1)])
async def test_an_async_task_may_await_futures_concurrently(shape):
    """Overlapping waits of one run give its slot back once and take it once after."""
    async with cluster_client(*shape) as (_cluster, client):
        assert await client.submit(fib_concurrent, 8) == 21


async def test_a_run_end_never_overtakes_the_slot_passed_to_it(monkeypatch):
    # a flush that yields after every round (as it does after eight under load): a run
    # that was passed its slot by another thread ends through the session queue, behind
    # that thread's commands; a run_sync_soon of its own ran first and released a token
    # the run did not hold yet (RuntimeError on the worker's loop)
    monkeypatch.setattr(engine_outbox, "_FLUSH_ROUNDS", 1)
    async with cluster_client(2, 1) as (_, client):
        assert await client.submit(STYLES["worker_client"], 12) == 144
