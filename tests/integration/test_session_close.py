"""When a session closes (the scheduler goes away, or the client is closed), every
waiter wakes at once with ClientClosedError: status, gather, result, wait."""

from __future__ import annotations

import pytest
import trio

import trioflow
from trioflow import protocol as p

from .fake_scheduler import FakeScheduler

#: far longer than the test may take: a waiter that is not woken fails the test
LONG = 120


class DroppingScheduler(FakeScheduler):
    """Welcomes one client, then swallows everything until ``drop()``."""

    def __init__(self) -> None:
        super().__init__()
        self.status_requested = trio.Event()
        self._drop = trio.Event()

    async def talk(self, ws) -> None:
        async with trio.open_nursery() as nursery:

            async def swallow():
                while True:
                    for msg in p.decode_frame(await ws.get_message(), p.PROTOCOL_VERSION):
                        if isinstance(msg, p.StatusRequest):
                            self.status_requested.set()

            nursery.start_soon(swallow)
            await self._drop.wait()
            nursery.cancel_scope.cancel()
        await ws.aclose(1011, "gone")

    def drop(self) -> None:
        self._drop.set()


async def _outcome(afn):
    try:
        await afn()
    except trioflow.ClientClosedError as exc:
        return exc
    return "returned"


@pytest.mark.parametrize("how", ["scheduler_leaves", "client_closes"])
async def test_closing_wakes_every_async_waiter_at_once(how):
    fake = DroppingScheduler()
    outcomes = {}
    all_woken = trio.Event()

    async def record(name, afn):
        outcomes[name] = await _outcome(afn)
        if len(outcomes) == 4:
            all_woken.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        with trio.fail_after(LONG / 4):
            # the waiters' nursery is outside the client, so leaving the client's block
            # is closing it under their feet
            async with trio.open_nursery() as waiters:
                async with trioflow.AsyncClient(fake.address) as client:
                    future = client.submit(abs, -1)
                    waiters.start_soon(record, "status", client.status)
                    waiters.start_soon(record, "gather", lambda: client.gather([future]))
                    waiters.start_soon(record, "result", lambda: future)
                    waiters.start_soon(record, "wait", lambda: trioflow.wait_async([future]))
                    await fake.status_requested.wait()  # the status request is in flight
                    if how == "scheduler_leaves":
                        fake.drop()
                        await all_woken.wait()
        for name in ("status", "gather", "result"):
            assert isinstance(outcomes[name], trioflow.ClientClosedError), (name, outcomes)
        assert outcomes["wait"] == "returned"  # wait() returns; the future is done
        assert future.done()
        with pytest.raises(trioflow.ClientClosedError):
            await client.status()  # and later calls fail at once too
        nursery.cancel_scope.cancel()


async def test_blocking_client_status_and_result_wake_when_the_scheduler_leaves():
    fake = DroppingScheduler()
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        client = await trio.to_thread.run_sync(trioflow.Client, fake.address)
        try:
            future = client.submit(abs, -1)
            outcomes = {}

            def blocking(name, fn):
                try:
                    fn()
                    outcomes[name] = "returned"
                except trioflow.ClientClosedError as exc:
                    outcomes[name] = exc

            async with trio.open_nursery() as waiters:
                waiters.start_soon(trio.to_thread.run_sync, blocking, "status",
                                   lambda: client.status(timeout=LONG))
                waiters.start_soon(trio.to_thread.run_sync, blocking, "result",
                                   lambda: future.result(timeout=LONG))
                await fake.status_requested.wait()
                fake.drop()
            assert all(isinstance(o, trioflow.ClientClosedError) for o in outcomes.values()), \
                outcomes
        finally:
            await trio.to_thread.run_sync(client.close)
        nursery.cancel_scope.cancel()
