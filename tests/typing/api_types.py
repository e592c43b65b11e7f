"""What a type checker sees of the public API: checked by mypy in CI (``.ci/run``),
never executed. Each ``assert_type`` fails the check if an inferred type drifts."""

from __future__ import annotations

from typing_extensions import assert_type  # typing's own is 3.11+; mypy checks as 3.10

import trioflow


def inc(x: int) -> int:
    return x + 1


async def ainc(x: int) -> int:
    return x + 1


def blocking(client: trioflow.Client) -> None:
    fut = client.submit(inc, 1)
    assert_type(fut, trioflow.Future[int])
    assert_type(fut.result(), int)
    assert_type(client.submit(ainc, 1), trioflow.Future[int])
    futs = client.map(inc, [1, 2, 3])
    assert_type(futs, list[trioflow.Future[int]])
    assert_type(client.gather(futs), list[int])
    assert_type(client.gather(fut), int)


async def trio_native(client: trioflow.AsyncClient) -> None:
    fut = client.submit(inc, 1)
    assert_type(await fut, int)
    assert_type(await client.gather([fut]), list[int])
    assert_type(await client.gather(fut), int)


def anywhere() -> None:
    assert_type(trioflow.get_client(), trioflow.Client | trioflow.AsyncClient)


def primitives(client: trioflow.Client) -> None:
    lock = trioflow.Lock("L", client=client)
    assert_type(lock.acquire(timeout=1.0), bool)
    assert_type(lock.acquire(blocking=False), bool)
    assert_type(lock.locked(), bool)
    with lock:
        pass
    sem = trioflow.Semaphore(2, "S", client=client)
    assert_type(sem.acquire(), bool)
    assert_type(sem.get_value(), int)
    q = trioflow.Queue("Q", client, maxsize=2)
    q.put(1, timeout=1)
    assert_type(q.qsize(), int)
    assert_type(trioflow.Event("E", client).wait(0.5), bool)
    trioflow.Variable("V", client).set({"a": 1})
    client.submit(inc, 1, resources={"GPU": 1})


async def primitives_async(client: trioflow.AsyncClient) -> None:
    lock = trioflow.Lock("L", client=client)
    assert_type(await lock.acquire_async(timeout=1.0), bool)
    async with lock:
        pass
    assert_type(await trioflow.Event("E", client).wait_async(), bool)
    await trioflow.Queue("Q", client).put_async(1)
