"""Same-host transfers through /dev/shm segments, and no segment ever left behind."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing

import trioflow
from trioflow import serialize
from trioflow.errors import RemoteProtocolError
from trioflow.net import cma, shm
from trioflow.net.bulk import BulkPool

from .clihelpers import cli_scheduler, start_worker, stop
from .conftest import cluster_client
from .test_data_plane import Store, start_server

pytestmark = pytest.mark.skipif(not shm.host_identity(), reason="no usable /dev/shm")


def ours() -> list[str]:
    """Segments of this process still in /dev/shm."""
    return [n for n in os.listdir(shm.SHM_DIR) if n.startswith(f"trioflow-{os.getpid()}-")]


@pytest.fixture
def segments(monkeypatch):
    """The names of the segments written through the real ``shm.write_segment``."""
    written: list[str] = []
    real = shm.write_segment

    def spy(frames, *args, **kwargs):
        name, lengths = real(frames, *args, **kwargs)
        written.append(name)
        return name, lengths

    monkeypatch.setattr(shm, "write_segment", spy)
    return written


@pytest.fixture
def copies(monkeypatch):
    """The sizes of the values copied across processes with process_vm_readv (the
    16-byte probes of each connection's hello left out)."""
    sizes: list[int] = []
    real = cma.read

    def spy(pid, address, n):
        data = real(pid, address, n)
        if n != len(cma.NONCE):
            sizes.append(n)
        return data

    monkeypatch.setattr(cma, "read", spy)
    return sizes


cross_memory = pytest.mark.skipif(not cma.probe(*cma.shown(), cma.NONCE),
                                  reason="process_vm_readv is not allowed here")


def size(x):
    return len(x)


def array_sum(a):
    return float(a.sum()), a.flags.writeable


def make(n):
    return bytes(range(256)) * (n // 256)


@cross_memory
async def test_bulk_get_and_put_go_through_shared_memory(segments, copies):
    np = pytest.importorskip("numpy")
    store = Store()
    store.accepting = {"a", "b", "small"}
    async with trio.open_nursery() as nursery:
        address = await start_server(nursery, store)
        pool = BulkPool(token="secret", ssl_context=None)
        arr = np.arange(1_000_000, dtype="float64")
        blob = make(3_000_064)
        await pool.put(address, {"a": serialize.dumps_frames({"x": arr, "y": blob}),
                                 "b": serialize.dumps_frames(blob),
                                 "small": serialize.dumps_frames(b"tiny")})
        assert len(segments) == 1 and copies == []  # one segment for all three values
        store.accepting.add("c")  # plain bytes alone: the server copies them from us
        await pool.put(address, {"c": serialize.dumps_frames(blob)})
        assert len(segments) == 1 and copies == [len(blob)]
        assert serialize.loads_frames(store.frames["c"]) == blob
        copies.clear()
        got, missing = await pool.get(address, ["a", "b", "small"])
        # a segment for the array; the plain bytes copied from the server's memory once
        # (process_vm_readv), straight into the reader's bytes object; small on TCP
        assert missing == [] and len(segments) == 2 and copies == [len(blob)]
        a = serialize.loads_frames(got["a"])
        assert (a["x"] == arr).all() and a["y"] == blob and a["x"].flags.writeable
        b = serialize.loads_frames(got["b"])
        assert type(b) is bytes and b == blob
        assert serialize.loads_frames(got["small"]) == b"tiny"
        # small requests use the socket
        got, _ = await pool.get(address, ["small"])
        assert len(segments) == 2
        # without process_vm_readv, bytes go through a segment too
        plain = BulkPool(token="secret", ssl_context=None)
        plain.cross_memory = False
        got, _ = await plain.get(address, ["b"])
        assert serialize.loads_frames(got["b"]) == blob and len(segments) == 3
        assert copies == [len(blob)]
        await plain.aclose()
        await pool.aclose()
        nursery.cancel_scope.cancel()
    assert ours() == []  # every segment unlinked, by its reader or its writer


async def test_no_shared_memory_offered_means_tcp(segments):
    store = Store()
    store.accepting = {"a"}
    async with trio.open_nursery() as nursery:
        address = await start_server(nursery, store)
        pool = BulkPool(token="secret", ssl_context=None, shared_memory=False)
        await pool.put(address, {"a": serialize.dumps_frames(make(2_000_128))})
        got, _ = await pool.get(address, ["a"])
        assert serialize.loads_frames(got["a"]) == make(2_000_128) and segments == []
        await pool.aclose()
        nursery.cancel_scope.cancel()


def array_total(a):
    return float(a.sum())


def first_byte(x):
    x[0] = 255 - x[0]  # a reader's copy is its own (copy-on-write)
    return x[0]


@cross_memory
async def test_cluster_transfers_on_one_host_use_shared_memory(segments, copies):
    np = pytest.importorskip("numpy")
    async with cluster_client(2, 1) as (cluster, client):
        produced = client.submit(make, 5_000_192, workers=["worker-0"])
        assert await client.submit(size, produced, workers=["worker-1"]) == 5_000_192
        assert await client.submit(size, produced, workers=["worker-1"]) == 5_000_192
        assert await produced == make(5_000_192)  # gather
        # plain bytes: each reader copied them from the holder's object, once, and the
        # holder wrote no segment
        assert segments == [] and copies == [5_000_192] * 3
        array = client.submit(np.zeros, 2_000_000, dtype="uint8", workers=["worker-0"])
        assert await client.submit(first_byte, array, workers=["worker-1"]) == 255
        assert await client.submit(first_byte, array, workers=["worker-1"]) == 255
        assert (await array == 0).all()  # the holder's copy is untouched
        scattered = await client.scatter(make(4_000_256))
        assert await client.submit(size, scattered) == 4_000_256
        # the array's segment; the scattered bytes were copied from the client's object
        assert len(segments) == 1 and copies == [5_000_192] * 3 + [4_000_256]
        del produced, array
        store = cluster.workers[0].store
        await store.wait_for(lambda d: not store.segments)  # unlinked with their keys
    assert ours() == []


async def test_large_arrays_move_into_shared_memory_when_made(segments):
    np = pytest.importorskip("numpy")
    async with cluster_client(2, 1) as (cluster, client):
        store = cluster.workers[0].store
        array = client.submit(np.ones, 500_000, workers=["worker-0"])  # 4 MB
        await trioflow.wait_async([array])
        # (the segment is cached first; the value is rebuilt on it next, then _wake)
        await store.wait_for(lambda d: not d[array.key].flags.owndata)
        held = store.data[array.key]
        # rebuilt on it; cached by the store (the loop takes it in after the run's end,
        # which its thread reports first: a reader in between finds it all the same)
        assert store.cached_segment(array.key) is not None and held.flags.writeable
        assert len(segments) == 1
        assert await client.submit(array_total, array, workers=["worker-1"]) == 500_000
        assert (await array == 1).all()
        assert len(segments) == 1  # both readers mapped the copy made with the result


async def test_a_scattered_arrays_segment_is_kept_by_its_worker_for_later_readers(segments):
    np = pytest.importorskip("numpy")
    async with cluster_client(2, 1) as (cluster, client):
        [scattered] = await client.scatter([np.ones(500_000)])
        assert await client.submit(array_total, scattered) == 500_000  # (uploaded by now)
        [holder] = [w for w in cluster.workers if w.store.holds(scattered.key)]
        [other] = [w.name for w in cluster.workers if w is not holder]
        store = holder.store
        assert len(segments) == 1  # the client's upload
        name, _ = store.segments[scattered.key]  # adopted: renamed, kept by the worker
        assert name != segments[0] and os.path.exists(os.path.join(shm.SHM_DIR, name))
        assert not os.path.exists(os.path.join(shm.SHM_DIR, segments[0]))
        assert await client.submit(first_byte, scattered, workers=[other]) == 254.0
        assert await client.submit(array_total, scattered, workers=[holder.name]) == 500_000
        assert len(segments) == 1  # the reader mapped the upload's copy; its write stayed its
        del scattered
        await store.wait_for(lambda d: not store.segments)
        assert not os.path.exists(os.path.join(shm.SHM_DIR, name))
    assert ours() == []


async def test_a_reader_that_met_the_holder_maps_its_published_segment_without_asking(
        segments, monkeypatch):
    np = pytest.importorskip("numpy")
    requests: list[str] = []
    real = BulkPool._request

    async def counted(self, address, exchange):
        requests.append(address)
        return await real(self, address, exchange)

    monkeypatch.setattr(BulkPool, "_request", counted)
    async with cluster_client(2, 1) as (cluster, client):
        holder = cluster.workers[0]
        first = client.submit(np.ones, 500_000, workers=["worker-0"])
        second = client.submit(np.zeros, 500_000, workers=["worker-0"])
        assert await client.submit(array_total, first, workers=["worker-1"]) == 500_000
        assert requests == [holder.data_address]  # (met it: learns its pid and space)
        assert await client.submit(array_total, second, workers=["worker-1"]) == 0
        assert await client.submit(first_byte, first, workers=["worker-1"]) == 254.0
        assert requests == [holder.data_address]  # mapped by name: no request at all
        assert (await first == 1).all() and len(segments) == 2  # (a write stays its own)
        # a published segment gone (its key freed) is simply not found: ask the holder
        name = holder.store.segments[second.key][0]
        del second
        await holder.store.wait_for(lambda d: len(holder.store.segments) == 1)
        assert not os.path.exists(os.path.join(shm.SHM_DIR, name))
        assert shm.open_published(os.getpid(), holder.store.space, "no-such-key") is None


async def test_segment_names_are_checked():
    for name in ("../../etc/passwd", "trioflow-1-2-zz", "other-1-2-0123abcd"):
        with pytest.raises(RemoteProtocolError):
            shm.read_segment(name, [1], [1])


def leave_a_segment():
    """Inside a worker: write a segment and keep it, as a worker killed mid-transfer does."""
    name, _ = shm.write_segment([b"x" * 1000])
    return name


async def test_segments_of_a_killed_worker_are_removed_at_the_next_start():
    async with cli_scheduler() as (address, _):
        first = await start_worker(address, "--name", "first")
        second = None
        try:
            async with trioflow.AsyncClient(address) as client:
                await client.wait_for_workers(1, timeout=30)
                name = await client.submit(leave_a_segment)
                assert name.startswith(f"trioflow-{first.pid}-")
                assert os.path.exists(os.path.join(shm.SHM_DIR, name))
                first.kill()  # SIGKILL: no cleanup of its own
                await first.wait()
                assert os.path.exists(os.path.join(shm.SHM_DIR, name))
                second = await start_worker(address, "--name", "second")
                # it runs only once `second` has joined, which is after its cleanup
                assert await client.submit(size, b"ab", workers=["second"]) == 2
                assert not os.path.exists(os.path.join(shm.SHM_DIR, name))
        finally:
            for w in (first, second):
                if w is not None:
                    await stop(w)


async def test_local_cluster_removes_a_killed_workers_segments():
    async with trioflow.open_local_cluster(1, 1, processes=True) as cluster:
        async with trioflow.AsyncClient(cluster.address) as client:
            name = await client.submit(leave_a_segment)
            path = os.path.join(shm.SHM_DIR, name)
            assert os.path.exists(path)
            proc = cluster.processes[0]
            proc.kill()
            await proc.wait()
            await trio.testing.wait_all_tasks_blocked()  # the cluster's watcher ran
            assert not os.path.exists(path)



async def test_hostile_segment_names_lose_the_connection_and_nothing_else():
    from trioflow.net.bulk import VERSION, BulkStream

    store = Store()
    store.accepting = {"k", "ok"}
    async with trio.open_nursery() as nursery:
        address = await start_server(nursery, store)
        port = int(address.rsplit(":", 1)[1])
        for name, lengths in (("../../etc/passwd", [10]), ("trioflow-1-2-0123abcd", [10]),
                              ("trioflow-1-2-0123abcd", "x")):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            conn = BulkStream(stream)
            await conn.send(["hello", VERSION, "secret", shm.host_identity()])
            reply, _ = await conn.receive()
            assert reply[:2] == ["ok", shm.host_identity()]
            await conn.send(["shmput", ["k"], [1], name, lengths])
            try:
                reply, _ = await conn.receive()
            except trio.BrokenResourceError:
                pass  # dropped (a malformed request)
            else:
                assert reply[0] == "error"  # refused (a segment that is not there)
            await conn.aclose()
        assert "k" not in store.frames
        pool = BulkPool(token="secret", ssl_context=None)  # the server still serves
        await pool.put(address, {"ok": serialize.dumps_frames(make(2_000_128))})
        assert serialize.loads_frames(store.frames["ok"]) == make(2_000_128)
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_no_room_in_dev_shm_means_tcp(tmp_path, monkeypatch, segments):
    from .test_memory_limit import tiny_disk

    with tiny_disk(tmp_path / "shm") as small:  # a 1 MB tmpfs, like a tight /dev/shm
        monkeypatch.setattr(shm, "SHM_DIR", str(small))
        store = Store()
        store.accepting = {"a"}
        async with trio.open_nursery() as nursery:
            address = await start_server(nursery, store)
            pool = BulkPool(token="secret", ssl_context=None)
            await pool.put(address, {"a": serialize.dumps_frames(make(2_000_128))})
            got, _ = await pool.get(address, ["a"])
            assert serialize.loads_frames(got["a"]) == make(2_000_128)
            assert segments == [] and os.listdir(small) == []  # refused before writing
            await pool.aclose()
            nursery.cancel_scope.cancel()
