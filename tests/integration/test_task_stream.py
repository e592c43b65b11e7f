"""dask's module-level ``performance_report`` and ``get_task_stream`` context managers
(``trioflow/task_stream.py``), from a thread and on the event loop."""

import json

import pytest
import trio

import trioflow

from .conftest import cluster_client
from .tasks import boom, inc


async def test_get_task_stream_lists_the_runs_of_the_block_in_dasks_shape():
    async with cluster_client(2, 1) as (_, client):
        await client.submit(inc, 0)  # before the block: not listed
        async with trioflow.get_task_stream(client) as ts:
            done = await client.gather(client.map(inc, range(4)))
            failed = client.submit(boom)
            await trioflow.wait_async([failed])
        assert done == [1, 2, 3, 4]
        by_key = {r["key"]: r for r in ts.data}
        assert len(ts.data) == 5 and failed.key in by_key
        assert by_key[failed.key]["status"] == "error"
        ok = [r for r in ts.data if r["status"] == "OK"]
        assert len(ok) == 4 and {r["worker"] for r in ok} <= {"worker-0", "worker-1"}
        (span,) = ok[0]["startstops"]
        assert span["action"] == "compute" and span["stop"] >= span["start"] > 0


def _blocking(address, path):
    with trioflow.Client(address) as client:  # the current client: found by get_client()
        with trioflow.performance_report(filename=path):
            assert client.gather(client.map(inc, range(3))) == [1, 2, 3]
        with trioflow.get_task_stream() as ts:
            client.submit(inc, 10).result(30)
        with pytest.raises(ValueError), trioflow.get_task_stream() as failed_block:
            raise ValueError("the block failed")
        return ts.data, failed_block.data


async def test_module_level_report_and_stream_from_a_blocking_client(tmp_path):
    async with cluster_client(1, 1) as (cluster, _):
        path = tmp_path / "report.json"
        data, failed = await trio.to_thread.run_sync(_blocking, cluster.address, str(path))
        trace = json.loads(path.read_text())
        names = [e["name"] for e in trace["traceEvents"] if e.get("ph") == "X"]
        assert names == ["inc", "inc", "inc"]  # (trace events are named by function)
        assert [r["key"].startswith("inc-") for r in data] == [True] and failed == []
