"""trioflow.progress: a tqdm bar that returns when the futures are done."""

from __future__ import annotations

import io
import threading

import pytest
import trio

import trioflow

from .conftest import cluster_client
from .tasks import inc

GATE = threading.Event()


def gated(x):
    GATE.wait(30)
    return x


def boom():
    raise ValueError("no")


async def test_async_progress_waits_for_every_future_and_counts_failures():
    async with cluster_client(2, 1) as (_, client):
        GATE.clear()
        futures = [*client.map(gated, range(5)), client.submit(boom)]
        out = io.StringIO()
        job = trioflow.progress(futures, file=out)  # in a Trio task: returns at once
        assert not job.done and not all(f.done() for f in futures)
        GATE.set()
        await job
        assert job.done and all(f.done() for f in futures)
        assert "6/6" in out.getvalue() and "erred=1" in out.getvalue()
        assert job.erred == 1
        with pytest.raises(ValueError):
            await futures[-1]


async def test_sync_progress_blocks_until_done():
    async with cluster_client(2, 1) as (cluster, _):
        def run():
            with trioflow.Client(cluster.address) as client:
                futures = client.map(inc, range(20))
                out = io.StringIO()
                job = trioflow.progress(futures, out, desc="incs")
                return job.done, [f.done() for f in futures], out.getvalue()

        done, each, text = await trio.to_thread.run_sync(run)
        assert done and all(each)
        assert "incs" in text and "20/20" in text


async def test_progress_refuses_what_is_not_a_future():
    with pytest.raises(TypeError, match="takes Futures, got int"):
        trioflow.progress([1, 2])
