"""Worker plugins (``Client.register_plugin``), as dask's: set up on every worker and on
each that joins later before its first task, torn down when unregistered or when the
worker stops; a setup that raises is reported, and the cluster keeps working."""

from __future__ import annotations

import threading

import pytest
import trio

import trioflow
from trioflow.net.worker_node import WorkerNode

from .conftest import cluster_client
from .tasks import inc

#: (event, worker name) pairs recorded by the plugins of in-process workers
EVENTS: list[tuple[str, str]] = []
#: set by ``GatedPlugin.setup`` when it ends; set-and-read by ``saw_the_plugin``
READY = threading.Event()
TASK_RAN = threading.Event()


class Recorder(trioflow.WorkerPlugin):
    name = "recorder"

    def setup(self, worker):
        EVENTS.append(("setup", worker.name))

    def teardown(self, worker):
        EVENTS.append(("teardown", worker.name))


class Broken:
    def setup(self, worker):
        if worker.name == "worker-1":
            raise OSError(f"cannot prepare {worker.name}")


class GatedPlugin:
    """Its setup ends when a task runs, or after 1 s: if runs were not held until setups
    end, the task would run first and see no plugin."""

    def setup(self, worker):
        if worker.name == "late":
            TASK_RAN.wait(1.0)
            READY.set()


def saw_the_plugin():
    ready = READY.is_set()  # (read before telling the setup to go on)
    TASK_RAN.set()
    return ready


async def test_setup_on_every_worker_teardown_on_unregister_and_stop():
    EVENTS.clear()
    async with cluster_client(2, 1) as (_, client):
        answer = await client.register_plugin(Recorder())
        assert answer == {"worker-0": {"status": "OK"}, "worker-1": {"status": "OK"}}
        assert sorted(EVENTS) == [("setup", "worker-0"), ("setup", "worker-1")]
        # registering it again replaces it: teardown, then setup, on each worker
        await client.register_plugin(Recorder())
        for name in ("worker-0", "worker-1"):
            assert [e for e, w in EVENTS if w == name] == ["setup", "teardown", "setup"]
        assert await client.register_plugin(Recorder(), idempotent=True) == {}
        assert len(EVENTS) == 6  # kept as it was
        await client.unregister_worker_plugin("recorder")
        with pytest.raises(KeyError, match="no worker plugin named 'recorder'"):
            await client.unregister_worker_plugin("recorder")
        await client.register_plugin(Recorder())
        # a worker runs its plugin operations in order: the unregister's teardown came
        # before this setup, which register_plugin waited for
        assert [e for e, w in EVENTS if w == "worker-1"][-2:] == ["teardown", "setup"]
        del EVENTS[:]
    # the workers stopped with the cluster: each tore the plugin down
    assert sorted(EVENTS) == [("teardown", "worker-0"), ("teardown", "worker-1")]


async def test_a_failing_setup_is_reported_and_the_cluster_goes_on():
    async with cluster_client(2, 1) as (_, client):
        with pytest.raises(RuntimeError, match=r"failed to set up on 1 worker\(s\): "
                                               r"worker-1: OSError: cannot prepare worker-1"):
            await client.register_plugin(Broken(), name="broken")
        assert await client.submit(inc, 1) == 2
        with pytest.raises(TypeError, match="setup\\(worker\\) or teardown"):
            await client.register_plugin(object())


async def test_a_worker_joining_later_sets_up_before_its_first_task():
    READY.clear()
    TASK_RAN.clear()
    async with trioflow.open_local_cluster(1, 1) as cluster, trio.open_nursery() as nursery:
        async with trioflow.AsyncClient(cluster.address) as client:
            assert list(await client.register_plugin(GatedPlugin(), name="gated")) == [
                "worker-0"]
            queued = client.submit(saw_the_plugin, workers=["late"])  # waits for "late"
            late = WorkerNode(cluster.address, name="late")
            nursery.start_soon(late.serve)
            assert await queued is True
            assert "gated" in late.plugins.installed
            nursery.cancel_scope.cancel()


def _blocking(address, tmp_path):
    with trioflow.Client(address) as client:
        answer = client.register_worker_plugin(FileMarker(str(tmp_path)), name="marker")
        names = sorted(answer)
        assert names == ["worker-0", "worker-1"]
        return names


class FileMarker:
    """Leaves a file per worker: proof that a process worker ran it."""

    def __init__(self, directory):
        self.directory = directory

    def setup(self, worker):
        import pathlib

        pathlib.Path(self.directory, worker.name).write_text(worker.address)


async def test_worker_processes_get_the_plugin_by_value(tmp_path):
    async with trioflow.open_local_cluster(2, 1, processes=True) as cluster:
        names = await trio.to_thread.run_sync(_blocking, cluster.address, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert all((tmp_path / n).read_text().startswith("tcp://") for n in names)
