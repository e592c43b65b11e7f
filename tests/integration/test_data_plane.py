"""Large values: the bulk data path (raw TCP/TLS), direct scatter and gather, no relaying."""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess

import pytest
import trio

import trioflow
from trioflow import serialize
from trioflow.net.bulk import BulkPool, serve_bulk
from trioflow.net.worker_data import DataStore

from .clihelpers import cli_scheduler, start_worker, stop
from .conftest import cluster_client

MB = 1_000_000


# ------------------------------------------------------------------ the bulk server


class Store:
    """A data server's owner: a dict of frames, and which keys it will accept."""

    def __init__(self) -> None:
        self.frames: dict[str, list] = {}
        self.accepting: set[str] = set()

    async def get(self, keys):
        found = [k for k in keys if k in self.frames]
        return found, [self.frames[k] for k in found], [k for k in keys if k not in self.frames]

    async def put(self, values):
        if not set(values) <= self.accepting:
            raise ValueError(f"not expecting {sorted(set(values) - self.accepting)}")
        self.frames.update(values)


async def start_server(nursery, store, *, token="secret", ssl_context=None):
    return await nursery.start(lambda task_status: serve_bulk(
        store.get, store.put, "127.0.0.1", token=token, ssl_context=ssl_context,
        task_status=task_status))


async def test_bulk_round_trip_reuses_connections_and_reports_missing():
    store = Store()
    store.accepting = {"a", "b"}
    async with trio.open_nursery() as nursery:
        address = await start_server(nursery, store)
        assert address.startswith("tcp://127.0.0.1:")
        pool = BulkPool(token="secret", ssl_context=None)
        big = bytearray(range(256)) * 20_000  # 5 MB: received into an mmap
        await pool.put(address, {"a": serialize.dumps_frames({"x": big, "n": 1}),
                                 "b": serialize.dumps_frames(b"tiny")})
        got, missing = await pool.get(address, ["a", "nope", "b"])
        assert missing == ["nope"]
        assert serialize.loads_frames(got["a"]) == {"x": big, "n": 1}
        assert serialize.loads_frames(got["b"]) == b"tiny"
        assert len(pool._idle[address]) == 1  # both requests used one pooled connection
        with pytest.raises(ValueError, match="not expecting"):
            await pool.put(address, {"c": [b"B", b"1"]})
        assert (await pool.get(address, ["b"]))[1] == []  # still served after a refusal
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_bulk_server_refuses_wrong_token_and_survives_garbage():
    store = Store()
    store.frames["k"] = [b"B", b"value"]
    async with trio.open_nursery() as nursery:
        address = await start_server(nursery, store)
        port = int(address.rsplit(":", 1)[1])
        with pytest.raises(trioflow.AuthenticationError, match="wrong or missing token"):
            await BulkPool(token="guess", ssl_context=None).get(address, ["k"])
        for garbage in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x03abc", b"\x00\x00\x00\x01\x90",
                        b"\x00\x00\x00\x02\x91\x01" + b"junk" * 100):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(garbage)
            with trio.fail_after(10):  # the server hangs up: it does not wait forever
                try:
                    while await stream.receive_some(1024):
                        pass
                except trio.BrokenResourceError:
                    pass  # reset: it closed with some of our garbage unread
            await stream.aclose()
        pool = BulkPool(token="secret", ssl_context=None)
        got, _ = await pool.get(address, ["k"])  # the server still serves
        assert serialize.loads_frames(got["k"]) == b"value"
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_bulk_over_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(cert), str(key))
    store = Store()
    store.frames["k"] = serialize.dumps_frames(bytes(3 * MB))
    async with trio.open_nursery() as nursery:
        address = await start_server(nursery, store, ssl_context=server_ctx)
        assert address.startswith("tls://")
        pool = BulkPool(token="secret", ssl_context=ssl.create_default_context(cafile=str(cert)))
        got, _ = await pool.get(address, ["k"])
        assert serialize.loads_frames(got["k"]) == bytes(3 * MB)
        with pytest.raises(trioflow.AuthenticationError, match="not trusted"):
            await BulkPool(token="secret", ssl_context=ssl.create_default_context()).get(
                address, ["k"])
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_worker_gives_up_on_an_upload_that_never_comes():
    lost = []
    store = DataStore(name="w", token=None, ssl_context=None, data_ssl_context=None,
                      on_never_arrived=lost.append)
    store.arrival_timeout = 0.05
    async with trio.open_nursery() as nursery:
        address = await nursery.start(store.serve, "127.0.0.1")
        store.expect(["k"])
        await store.arriving["k"].wait()  # set when it is given up on
        assert lost == ["k"] and "k" not in store.arriving
        pool = BulkPool(token=None, ssl_context=None)
        with pytest.raises(ValueError, match="not told to expect"):
            await pool.put(address, {"k": serialize.dumps_frames(b"late")})
        store.expect(["j"])
        await pool.put(address, {"j": serialize.dumps_frames(b"on time")})
        assert store.value("j") == b"on time" and lost == ["k"]
        await pool.aclose()
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ on a cluster


def size(data):
    return len(data)


def scatter_inside(n):
    client = trioflow.get_client()
    [fut] = client.scatter([bytes(n)])
    return fut.key, client.submit(size, fut).result()


async def test_large_scatter_goes_straight_to_a_worker():
    async with cluster_client(2, 1) as (cluster, client):
        data = bytes(range(256)) * 4000  # 1 MB: above the 64 kB inline limit
        fut = await client.scatter(data)
        assert await client.submit(size, fut) == len(data)
        task = cluster.scheduler.state.tasks[fut.key]
        assert task.inline is None and len(task.who_has) == 1  # the scheduler kept no bytes
        holder = next(n for n in cluster.workers if n.peer_id in task.who_has)
        assert holder.store.holds(fut.key)
        assert holder.data_address.startswith("tcp://127.0.0.1:")  # loopback by default
        # results and scattered values, many at once, straight from their holders
        many = client.map(lambda i: bytes([i]) * 200_000, range(4))
        assert await client.gather(many) == [bytes([i]) * 200_000 for i in range(4)]
        [small] = await client.scatter([[1, 2, 3]])
        assert await client.submit(sum, small) == 6
        assert cluster.scheduler.state.tasks[small.key].inline is not None  # small: inline


async def test_scatter_inside_a_task_stays_on_its_worker():
    async with cluster_client(2, 1) as (cluster, client):
        key, n = await client.submit(scatter_inside, 300_000, workers=["worker-1"])
        assert n == 300_000
        task = cluster.scheduler.state.tasks.get(key)
        if task is not None:  # (released once the task's future died)
            assert task.who_has == {cluster.workers[1].peer_id}


async def test_released_scatter_leaves_nothing_behind():
    async with cluster_client(1, 1) as (cluster, client):
        node = cluster.workers[0]
        fut = await client.scatter(bytes(500_000))
        key = fut.key
        del fut  # released, maybe before the upload even started
        store = node.store
        await store.wait_for(lambda d: key not in d and key not in store.blobs
                             and key not in store.arriving)
        await cluster.scheduler.wait_for(lambda: key not in cluster.scheduler.state.tasks)


async def test_failed_uploads_fail_the_key_with_a_clear_error():
    async with trioflow.open_local_cluster(1, 1, token="sesame") as cluster:
        async with trioflow.AsyncClient(cluster.address, token="sesame") as client:
            ok = await client.scatter(bytes(300_000))
            assert await client.submit(size, ok) == 300_000  # uploaded
            # a pool the data servers refuse (wrong token): every upload fails for real
            client._session.data_path.pool = BulkPool(token="wrong", ssl_context=None)
            bad = await client.scatter(bytes(300_000))
            with pytest.raises(trioflow.WorkerLost, match="could not place scattered data"):
                await client.submit(size, bad)
            assert await client.submit(size, ok) == 300_000  # the cluster is fine
        node = cluster.workers[0]
        await node.store.wait_for(lambda d: not node.store.arriving)


async def test_scattered_value_survives_its_worker_dying():
    async with cli_scheduler() as (address, _):
        first = await start_worker(address, "--name", "first")
        second = None
        try:
            async with trioflow.AsyncClient(address) as client:
                await client.wait_for_workers(1, timeout=30)
                fut = await client.scatter(bytes(700_000))  # placed on `first`, the only one
                assert await client.submit(size, fut) == 700_000
                second = await start_worker(address, "--name", "second")
                await client.wait_for_workers(2, timeout=30)
                first.kill()
                await first.wait()
                # the client still holds the value: it is uploaded again, to `second`
                assert await client.submit(size, fut, workers=["second"]) == 700_000
        finally:
            for w in (first, second):
                if w is not None:
                    await stop(w)


def make_big():
    return bytes(700_000)  # larger than the inline limit: lives on its worker only


async def test_input_fetch_failure_hands_the_run_back_then_recomputes(caplog):
    caplog.set_level(logging.INFO, "trioflow.net.worker_runs")
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))  # bound, not listening: fetches from it are refused
        refused = f"tcp://127.0.0.1:{dead.getsockname()[1]}"
        async with trioflow.open_local_cluster(3, 1, processes=False) as cluster:
            async with trioflow.AsyncClient(cluster.address) as client:
                state = cluster.scheduler.state
                big = client.submit(make_big)
                await trioflow.wait_async([big])
                (held_by,) = state.tasks[big.key].who_has
                holder = next(n for n in cluster.workers if n.peer_id == held_by)
                runner, stuck = (n for n in cluster.workers if n is not holder)
                # the holder's data port is gone (as when it was just killed) and the
                # scheduler has not heard yet: the dependent's fetch fails
                state.workers[holder.peer_id].data_address = refused
                dependent = client.submit(size, big, workers=[runner.name])
                await cluster.scheduler.wait_for(
                    lambda: runner.runs._fetch_handbacks.get(dependent.key))
                # handed back, not failed; now the scheduler hears of the death
                await holder.conn.aclose()
                assert await dependent == 700_000  # recomputed, then fetched or local
                # a holder that stays connected but cannot be reached: WorkerLost, after
                # a bounded number of hand-backs
                big2 = client.submit(make_big, pure=False, workers=[stuck.name])
                await trioflow.wait_async([big2])
                state.workers[stuck.peer_id].data_address = refused
                doomed = client.submit(size, big2, workers=[runner.name])
                with pytest.raises(trioflow.WorkerLost, match="could not fetch the inputs"):
                    await doomed
                handed = [r for r in caplog.records if "handing it back" in r.getMessage()
                          and doomed.key in r.getMessage()]
                assert len(handed) == 3


# ------------------------------------------------------------------ the holder KeyFinished names


def _counting_get_data(cluster) -> list[int]:
    """Count the GetData messages the scheduler receives from now on."""
    core, count = cluster.scheduler.core, [0]
    handle = core.handle

    def counting(event):
        count[0] += sum(type(m) is trioflow.protocol.GetData
                        for m in getattr(event, "messages", ()))
        return handle(event)

    core.handle = counting
    return count


def _big(n: int) -> bytes:
    return bytes(range(256)) * (n // 256)


async def test_a_large_result_is_fetched_from_the_holder_named_with_no_scheduler_round_trip():
    with trio.fail_after(30):
        async with cluster_client(2, 1) as (cluster, client):
            asked = _counting_get_data(cluster)
            future = client.submit(_big, 4 * MB, pure=False)
            assert await future == _big(4 * MB)
            holder = future._state.holder
            assert holder in [w.data_address for w in cluster.workers]
            assert asked[0] == 0


@pytest.mark.parametrize("hint", ["other worker", "nobody listening"])
async def test_a_holder_hint_out_of_date_falls_back_to_asking_the_scheduler(hint):
    with trio.fail_after(30):
        async with cluster_client(2, 1) as (cluster, client):
            future = client.submit(_big, 4 * MB, workers=["worker-0"], pure=False)
            await trioflow.wait_async([future])
            asked = _counting_get_data(cluster)
            if hint == "other worker":  # as if the value had moved: that worker lacks it
                future._state.holder = cluster.workers[1].data_address
            else:  # as if its worker had left
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    future._state.holder = f"tcp://127.0.0.1:{s.getsockname()[1]}"
            assert await future == _big(4 * MB)
            assert asked[0] == 1
