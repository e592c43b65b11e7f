"""``Client.retry`` and ``Future.retry``: failed tasks run again with the failed tasks
they depend on (as in dask); what cannot run again is refused, saying why."""

import gc
import threading

import pytest
import trio

import trioflow

from .conftest import cluster_client
from .tasks import inc

#: how often each flaky task ran (in-process workers share this module)
RUNS: dict[str, int] = {}
_lock = threading.Lock()


def flaky(name, x=0):
    """Fails on its first run, succeeds from its second on."""
    with _lock:
        RUNS[name] = RUNS.get(name, 0) + 1
        first = RUNS[name] == 1
    if first:
        raise OSError(f"{name}: transient failure")
    return x + 1


async def test_retry_runs_the_failed_chain_again_inputs_first():
    RUNS.clear()
    async with cluster_client(2, 1) as (_, client):
        a = client.submit(flaky, "a", 1)
        b = client.submit(inc, a)  # fails because a did (b never ran)
        with pytest.raises(OSError, match="a: transient"):
            await b
        assert b.status == "error" and RUNS == {"a": 1}
        await client.retry([b])  # retries a too
        assert b.status in ("pending", "finished")
        assert await b == 3 and await a == 2
        assert RUNS == {"a": 2}
        await client.retry([a, b])  # finished ones are left alone
        assert RUNS == {"a": 2} and await b == 3


async def test_what_cannot_run_again_is_refused_with_the_reason():
    RUNS.clear()
    async with cluster_client(1, 1) as (_, client):
        done = client.submit(inc, 5)
        await done
        client.cancel([done])  # (a finished task is cancelled too, as in dask)
        with pytest.raises(ValueError, match="was cancelled"):
            await client.retry([done])
        dep = client.submit(inc, 1)
        await dep
        bad = client.submit(flaky, "released", dep)
        await trioflow.wait_async([bad])
        # bad failed, and nothing held dep but bad: its result was released
        del dep
        gc.collect()
        await client.submit(inc, 0)  # a round trip: the release reached the scheduler
        with pytest.raises(ValueError, match="was released: submit it again"):
            await client.retry([bad])
        with pytest.raises(TypeError, match="retry takes futures"):
            await client.retry(["a key"])


def _blocking_retry(address):
    with trioflow.Client(address) as client:
        f = client.submit(flaky, "blocking")
        assert isinstance(f.exception(30), OSError)
        f.retry()
        assert f.result(30) == 1


async def test_future_retry_from_a_blocking_client():
    RUNS.clear()
    async with cluster_client(1, 1) as (cluster, _):
        await trio.to_thread.run_sync(_blocking_retry, cluster.address)
        assert RUNS == {"blocking": 2}
