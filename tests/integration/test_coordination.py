"""Lock, Semaphore, Queue, Event and Variable on real clusters: from clients, from sync
and async tasks, across a worker's death, and as part of the deadlock rule."""

import os
import pickle
import signal
import threading

import pytest
import trio

import trioflow

from .conftest import cluster_client


def locked_increment(i):
    with trioflow.Lock("counter-lock"):
        count = trioflow.Variable("count")
        try:
            n = count.get(timeout=0)
        except TimeoutError:
            n = 0
        count.set(n + 1)
    return i


async def test_a_lock_excludes_across_workers_and_threads():
    async with cluster_client(workers=2, threads=2) as (_, client):
        futures = client.map(locked_increment, range(12))
        assert sorted(await client.gather(futures)) == list(range(12))
        assert await trioflow.Variable("count", client).get_async() == 12
        lock = trioflow.Lock("counter-lock", client=client)
        assert not await lock.locked_async()
        async with lock:
            assert await lock.locked_async()
        with pytest.raises(RuntimeError, match="released too often"):
            await lock.release_async()


def produce(n):
    q = trioflow.Queue("jobs")
    for i in range(n):
        q.put(i)
    q.put(None)
    return n


async def consume_async():
    q = trioflow.Queue("jobs")
    out = []
    while (item := await q.get_async()) is not None:
        out.append(item)
    return out


async def test_a_queue_between_a_sync_producer_and_an_async_consumer():
    async with cluster_client(workers=1, threads=2) as (_, client):
        consumer = client.submit(consume_async)
        producer = client.submit(produce, 5)
        assert await consumer == [0, 1, 2, 3, 4] and await producer == 5
        q = trioflow.Queue("jobs", client)
        assert await q.qsize_async() == 0
        with pytest.raises(TimeoutError, match="still empty"):
            await q.get_async(timeout=0.05)
        await q.put_async("x")
        assert await q.get_async(batch=True) == ["x"]


def wait_for_go(timeout):
    return trioflow.Event("go").wait(timeout)


async def test_event_and_variable_from_client_and_tasks():
    async with cluster_client(workers=1, threads=2) as (_, client):
        go = trioflow.Event("go", client)
        assert not await client.submit(wait_for_go, 0.05)
        waiting = client.submit(wait_for_go, None)
        await go.set_async()
        assert await waiting and await go.is_set_async()
        await go.clear_async()
        assert not await go.is_set_async()
        v = trioflow.Variable("v", client)
        with pytest.raises(TimeoutError, match="not set"):
            await v.get_async(timeout=0.01)
        await v.set_async({"a": [1, 2]})
        assert await client.submit(lambda: trioflow.Variable("v").get()) == {"a": [1, 2]}
        await v.delete_async()


def hold_lock_and_wait_on_child():
    client = trioflow.get_client()
    with trioflow.Lock("L"):
        return client.submit(take_lock).result()


def take_lock():
    with trioflow.Lock("L"):
        return "got it"


async def test_parent_holding_a_lock_its_child_wants_is_a_reported_deadlock():
    async with cluster_client(workers=1, threads=2) as (cluster, client):
        with pytest.raises(trioflow.DeadlockError) as info:
            await client.submit(hold_lock_and_wait_on_child)
        report = info.value.report
        assert "Lock 'L': 1 of 1 lease(s), held by task hold_lock_and_wait_on_child" in report
        assert "waiting: task take_lock" in report and "(acquire)" in report
        assert cluster.scheduler.state.deadlocks


def consume_sync():
    return trioflow.Queue("work").get()


async def test_consumers_on_every_slot_and_their_producer_behind_them_is_a_deadlock():
    async with cluster_client(workers=1, threads=2) as (_, client):
        consumers = [client.submit(consume_sync) for _ in range(2)]
        producer = client.submit(lambda: trioflow.Queue("work").put(1))
        with pytest.raises(trioflow.DeadlockError, match="Queue 'work': 0 item"):
            await consumers[0]
        # the freed slots let the producer run; its item wakes nobody, or one consumer
        await producer


async def test_no_deadlock_while_the_client_holds_the_queue():
    async with cluster_client(workers=1, threads=1) as (_, client):
        q = trioflow.Queue("work", client)
        consumer = client.submit(consume_sync)
        await trio.sleep(0)  # (nothing to wait for: the put below races the get)
        await q.put_async(7)
        assert await consumer == 7


def lock_with_timeout():
    return trioflow.Lock("held").acquire(timeout=0.05)


async def test_timed_acquire_is_never_a_deadlock_and_returns_false():
    async with cluster_client(workers=1, threads=1) as (cluster, client):
        lock = trioflow.Lock("held", client=client)
        assert await lock.acquire_async()
        assert await client.submit(lock_with_timeout) is False
        assert not await lock.acquire_async(blocking=False)
        await lock.release_async()
        assert not cluster.scheduler.state.deadlocks


async def test_a_cancelled_async_acquire_takes_no_lease():
    async with cluster_client(workers=1, threads=1) as (_, client):
        mine = trioflow.Lock("x", client=client)
        other = trioflow.Lock("x", client=client)
        await mine.acquire_async()
        with trio.move_on_after(0.05):
            await other.acquire_async()
        await mine.release_async()
        assert await other.acquire_async(timeout=5)
        await other.release_async()


def semaphore_peak(i):
    with trioflow.Semaphore(2, "licences"):
        active = trioflow.Queue("active")
        active.put(i)
        n = active.qsize()
        active.get()
    return n


async def test_semaphore_bounds_concurrency_and_bad_arguments_fail_at_the_call():
    async with cluster_client(workers=2, threads=2) as (_, client):
        peaks = await client.gather(client.map(semaphore_peak, range(8)))
        assert max(peaks) <= 2
        sem = trioflow.Semaphore(2, "licences", client=client)
        assert await sem.get_value_async() == 0
        async with sem:  # while a lease is held, the name has one max_leases
            assert await sem.get_value_async() == 1
            with pytest.raises(ValueError, match="max_leases=2"):
                await trioflow.Semaphore(3, "licences", client=client).acquire_async()
        with pytest.raises(ValueError, match="max_leases must be >= 1"):
            trioflow.Semaphore(0, client=client)
        with pytest.raises(TypeError, match="maxsize must be an int"):
            trioflow.Queue("q", client, maxsize="3")
        with pytest.raises(ValueError, match="timeout must be >= 0"):
            await sem.acquire_async(timeout=-1)
        with pytest.raises(trioflow.SerializationError, match="the value put in Queue 'q'"):
            await trioflow.Queue("q", client).put_async({"lock": threading.Lock()})
        with pytest.raises(RuntimeError, match="acquire_async"):
            sem.acquire()  # a blocking call on the event loop's thread


def blocking_client_part(address):
    with trioflow.Client(address) as client:
        q = trioflow.Queue("q", client, maxsize=1)
        q.put(1)
        with pytest.raises(TimeoutError, match="still full"):
            q.put(2, timeout=0.05)
        assert client.submit(lambda q: q.get(), q).result() == 1
        lock = trioflow.Lock("blocking", client=client)
        with lock:
            assert lock.locked()
            assert client.submit(lambda other: other.acquire(blocking=False), lock).result() is False
        assert pickle.loads(pickle.dumps(lock)).name == "blocking"


async def test_blocking_client_and_pickled_objects():
    async with cluster_client(workers=1, threads=1) as (cluster, _):
        await trio.to_thread.run_sync(blocking_client_part, cluster.address)


def hold_forever():
    trioflow.Lock("dies").acquire()
    trioflow.Variable("holder-pid").set(os.getpid())
    trioflow.Event("holding").set()
    trioflow.Event("never").wait()


async def test_a_worker_that_dies_releases_its_tasks_locks():
    async with trioflow.open_local_cluster(1, 1, processes=True) as cluster:
        async with trioflow.AsyncClient(cluster.address) as client:
            never = trioflow.Event("never", client)  # (held here: not a deadlock)
            holder = client.submit(hold_forever, run_once=True)
            holding = trioflow.Event("holding", client)
            assert await holding.wait_async(timeout=30), holder
            lock = trioflow.Lock("dies", client=client)
            assert not await lock.acquire_async(blocking=False)
            os.kill(await trioflow.Variable("holder-pid", client).get_async(), signal.SIGKILL)
            assert await lock.acquire_async(timeout=30)
            assert not await never.is_set_async()


async def test_the_simulator_and_a_real_cluster_agree_on_primitive_programs():
    from trioflow.testing import simulate_program
    from trioflow.testing.live import run_on_local_cluster
    from trioflow.testing.program import ClusterShape, Program, Wait
    from trioflow.testing.scheduling import CANONICAL

    shape = ClusterShape(workers=1, slots=2)
    programs = [
        Program(uses="lock", children=(Program(uses="lock"),)),  # the parent holds L
        Program(wait=Wait.WORKER_CLIENT, uses="lock", children=(Program(), Program())),
        Program(wait=Wait.SECEDE, children=(Program(uses="put"), Program(uses="get"))),
        Program(wait=Wait.ASYNC, children=(Program(uses="get"), Program(uses="put"))),
    ]
    real = await run_on_local_cluster(programs, shape)
    simulated = [simulate_program(prog, shape, CANONICAL).outcome for prog in programs]
    assert [o.summary() for o in real] == [o.summary() for o in simulated]
    assert [o.summary() for o in real] == [("deadlock",), ("value", 3), ("value", 3),
                                           ("value", 3)]
