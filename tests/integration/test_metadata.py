"""dask's cluster-wide metadata and events through real clients and tasks: a value set
by one client (or a task) is read by another; events come back as (time, msg) pairs;
what the scheduler cannot hold as plain data is refused before it is sent."""

import time

import pytest
import trio

import trioflow

from .conftest import cluster_client


def logs_from_a_task(n):
    client = trioflow.get_client()
    client.set_metadata(["task", "n"], n)
    client.log_event("from-task", {"n": n})
    return client.get_metadata(["task"])


async def test_metadata_is_shared_by_clients_and_tasks():
    async with cluster_client(1, 1) as (cluster, client):
        await client.set_metadata(["job", "stage"], 1)
        await client.set_metadata("owner", "ana")
        assert await client.get_metadata(["job"]) == {"stage": 1}
        assert await client.submit(logs_from_a_task, 7) == {"n": 7}
        async with trioflow.AsyncClient(cluster.address) as other:
            assert await other.get_metadata(["task", "n"]) == 7
            assert await other.get_metadata("owner") == "ana"
            assert await other.get_metadata(["no", "such"], default=None) is None
            with pytest.raises(KeyError, match="no metadata at"):
                await other.get_metadata(["job", "nope"])
        (stamp, msg), = await client.get_events("from-task")
        assert msg == {"n": 7} and abs(stamp - time.time()) < 600


async def test_values_the_scheduler_cannot_hold_are_refused_before_sending():
    async with cluster_client(1, 1) as (_, client):
        with pytest.raises(TypeError, match="plain data only"):
            await client.set_metadata("x", {1, 2})
        with pytest.raises(TypeError, match="plain data only"):
            await client.set_metadata("x", {1: "int keys"})
        with pytest.raises(TypeError, match="plain data only"):
            await client.log_event("t", object())
        with pytest.raises(TypeError, match="keys are strings"):
            await client.set_metadata(["a", 3], 1)
        with pytest.raises(TypeError, match="non-empty string"):
            await client.log_event("", 1)
        # the connection is fine afterwards; tuples come back as lists, as in dask
        await client.set_metadata("x", (1, b"raw", None))
        assert await client.get_metadata("x") == [1, b"raw", None]


def _blocking(address):
    with trioflow.Client(address) as client:
        client.log_event(["a", "b"], "first")
        client.log_event("a", "second")
        assert [m for _, m in client.get_events("a")] == ["first", "second"]
        assert set(client.get_events()) >= {"a", "b"}
        assert client.get_events("never") == ()
        client.set_metadata(["k"], {"nested": [1, 2]})
        return client.get_metadata("k")


async def test_the_blocking_client_logs_and_reads_events():
    with trio.fail_after(60):
        async with cluster_client(1, 1) as (cluster, _):
            assert await trio.to_thread.run_sync(_blocking, cluster.address) == {"nested": [1, 2]}
