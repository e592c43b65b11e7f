"""``wait_for_workers`` returns once workers that join *after* it started are there, in
both clients (the scheduler answers its status request as the n-th worker joins,
``StatusRequest.min_workers``: issue 12's start-up), and raises TimeoutError when they
do not come. Real scheduler and worker processes from the CLI."""

from __future__ import annotations

from functools import partial

import pytest
import trio

import trioflow

from .clihelpers import cli_scheduler, start_worker, stop


async def test_the_async_client_waits_for_workers_that_join_later():
    with trio.fail_after(60):
        async with cli_scheduler() as (address, _):
            async with trioflow.AsyncClient(address) as client:
                with pytest.raises(TimeoutError):
                    await client.wait_for_workers(1, timeout=0.2)  # none yet
                workers = []
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(client.wait_for_workers, 2)
                        for i in range(2):  # started while it waits
                            workers.append(await start_worker(address, "--nthreads", "1",
                                                              "--name", f"late-{i}"))
                    assert len((await client.status())["workers"]) == 2
                finally:
                    for w in workers:
                        await stop(w)


async def test_the_blocking_client_waits_for_workers_that_join_later():
    with trio.fail_after(60):
        async with cli_scheduler() as (address, _):
            client = await trio.to_thread.run_sync(trioflow.Client, address)
            workers = []
            try:
                async with trio.open_nursery() as nursery:
                    async def wait() -> None:
                        await trio.to_thread.run_sync(client.wait_for_workers, 2)
                    nursery.start_soon(wait)
                    for i in range(2):
                        workers.append(await start_worker(address, "--nthreads", "1",
                                                          "--name", f"late-{i}"))
                status = await trio.to_thread.run_sync(client.status)
                assert len(status["workers"]) == 2
            finally:
                await trio.to_thread.run_sync(client.close)
                for w in workers:
                    await stop(w)


async def test_the_blocking_client_times_out_then_still_waits_and_works():
    """A wait that timed out leaves its request waiting on the scheduler; the late
    answer is dropped, and the next wait returns once a worker joins."""
    with trio.fail_after(60):
        async with cli_scheduler() as (address, _):
            client = await trio.to_thread.run_sync(trioflow.Client, address)
            worker = None
            try:
                with pytest.raises(TimeoutError, match="fewer than 1 workers"):
                    await trio.to_thread.run_sync(partial(client.wait_for_workers, 1,
                                                          timeout=0.2))
                worker = await start_worker(address, "--nthreads", "1", "--name", "late")
                await trio.to_thread.run_sync(client.wait_for_workers, 1)
                status = await trio.to_thread.run_sync(client.status)
                assert [w["name"] for w in status["workers"]] == ["late"]
            finally:
                await trio.to_thread.run_sync(client.close)
                if worker is not None:
                    await stop(worker)
