"""Bad input and vanished peers: the scheduler keeps serving, and nothing leaks."""

import gc

import msgpack
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

import trioflow
from trioflow import protocol as p

from .conftest import cluster_client


def make_blob(n):
    return b"x" * n


async def raw_peer(address, *frames):
    """Send raw frames; return the close code the scheduler answered with (or None)."""
    async with open_websocket_url(address) as ws:
        for frame in frames:
            await ws.send_message(frame)
        try:
            with trio.fail_after(10):
                while True:
                    await ws.get_message()
        except ConnectionClosed as exc:
            return exc.reason.code


def hello(**kw):
    return p.encode_frame([p.Hello(kw.pop("role", "client"), "raw", list(p.SUPPORTED_VERSIONS), **kw)])


GARBAGE = [
    b"\x00\x01not msgpack at all",
    msgpack.packb([p.PROTOCOL_VERSION, [["no-such-op", 1, 2]]]),
    msgpack.packb([p.PROTOCOL_VERSION, [["submit-task", 123, "f", b"", []]]]),
    msgpack.packb({"v": 1}),
    msgpack.packb([99, []]),
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
async def test_garbage_closes_only_that_connection(garbage):
    async with cluster_client(1, 1) as (cluster, client):
        # garbage instead of a hello, and garbage after a valid hello
        assert await raw_peer(cluster.address, garbage) in (p.CLOSE_PROTOCOL_ERROR,
                                                            p.CLOSE_VERSION_MISMATCH)
        assert await raw_peer(cluster.address, hello(), garbage) == p.CLOSE_PROTOCOL_ERROR
        assert await client.submit(abs, -5) == 5  # everyone else is still served


async def test_text_frames_unknown_roles_and_submits_without_function():
    async with cluster_client(1, 1) as (cluster, client):
        async with open_websocket_url(cluster.address) as ws:
            await ws.send_message("text, not binary")
            with pytest.raises(ConnectionClosed):
                with trio.fail_after(10):
                    await ws.get_message()
        assert await raw_peer(cluster.address, hello(role="admin")) == p.CLOSE_PROTOCOL_ERROR
        bad = p.encode_frame([p.SubmitTask("k", "unregistered", b"", [])])
        assert await raw_peer(cluster.address, hello(), bad) == p.CLOSE_PROTOCOL_ERROR
        assert await client.submit(abs, -6) == 6


async def test_browser_origin_is_refused():
    async with cluster_client(1, 1) as (cluster, _):
        with pytest.raises(Exception, match="403"):
            async with open_websocket_url(cluster.address,
                                          extra_headers=[(b"Origin", b"http://evil.example")]):
                pass


async def test_dropping_futures_frees_worker_memory():
    async with cluster_client(2, 1, inline_limit=100) as (cluster, client):
        futures = client.map(make_blob, [10_000] * 20)
        await trioflow.wait_async(futures)
        held = sum(len(node.data) for node in cluster.workers)
        assert held == 20
        del futures
        gc.collect()
        # the release travels client -> scheduler -> workers
        await cluster.scheduler.wait_for(lambda: not cluster.scheduler.state.tasks)
        for node in cluster.workers:
            await node.wait_for_data(lambda data: not data)


async def test_vanished_client_releases_its_work():
    async with cluster_client(1, 1) as (cluster, _):
        async with trioflow.AsyncClient(cluster.address) as other:
            futures = other.map(make_blob, [1000] * 5)
            await trioflow.wait_async(futures)
        await cluster.scheduler.wait_for(lambda: not cluster.scheduler.state.tasks)
        for node in cluster.workers:
            await node.wait_for_data(lambda data: not data)
