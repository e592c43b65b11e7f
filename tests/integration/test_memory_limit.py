"""Memory limits: values spill to disk, unspillable and unwritable ones stay, the worker
exits to be restarted above the terminate fraction."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading

import pytest
import trio

import trioflow
from trioflow.config import EXIT_RESTART
from trioflow.errors import SpillError
from trioflow.net.memory import SPILL_PREFIX, system_memory
from trioflow.net.worker_node import WorkerNode

from .clihelpers import PY, cli_scheduler, start_logged_worker, stop

MB = 1_000_000


def make_array(i, n):
    import numpy as np

    return np.full(n // 8, float(i))


def array_total(a):
    return float(a.sum())


def make_bytes(n):
    return bytes([n % 256]) * n


def size(x):
    return len(x)


class Unpicklable:
    """A large result that cannot be pickled (it holds a lock)."""

    nbytes = 8 * MB

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data = bytes(8 * MB)


def make_unpicklable():
    return Unpicklable()


def data_size(x):
    return len(x.data)


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    raise AssertionError("no VmHWM")


async def test_three_times_the_limit_in_results_completes_within_twice_the_limit(tmp_path):
    pytest.importorskip("numpy")
    limit = 600 * MB
    value = 40 * MB  # (above glibc's mmap threshold: freed arrays go back to the system)
    count = 46  # 1.84 GB held in results: over 3x the limit
    async with cli_scheduler() as (address, _):
        worker = await trio.lowlevel.open_process(
            [PY, "-m", "trioflow.cli", "worker", address, "--name", "w",
             "--memory-limit", "600MB", "--local-directory", str(tmp_path)])
        try:
            async with trioflow.AsyncClient(address) as client:
                await client.wait_for_workers(1, timeout=30)
                futures = [client.submit(make_array, i, value) for i in range(count)]
                totals = await client.gather(
                    [client.submit(array_total, f) for f in futures])
                n = value // 8
                assert totals == [float(i * n) for i in range(count)]
                status = await client.status()
                [w] = status["workers"]
                assert w["bytes"] >= count * value  # the scheduler counts every result
                assert any(p.name.startswith(SPILL_PREFIX) for p in tmp_path.iterdir())
                peak = _peak_rss_mb(worker.pid)
                assert peak <= 2 * limit / MB, f"worker peak RSS {peak:.0f} MB"
                del futures
        finally:
            await stop(worker)
    assert list(tmp_path.iterdir()) == []  # the spill directory goes with the worker


#: memory a task made this (CLI) worker hold, and whether the test let it go
HELD: list[bytes] = []
RELEASED = threading.Event()


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def hold_memory(total, port):
    """Grow this worker's resident memory to ``total`` bytes and hold it until the test
    connects to ``port``... and sends a byte; then free it."""
    HELD.append(b"\1" * max(total - _rss(), 0))  # (written: resident, not lazily zero)

    def release():
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.recv(1)
        RELEASED.set()  # (first: a run started after this point may see the memory
        HELD.clear()    # freed at once: one large block goes back to the system)

    threading.Thread(target=release, daemon=True).start()
    return _rss()


def ran_after_release():
    return RELEASED.is_set()


async def test_a_cli_worker_above_its_pause_fraction_starts_no_run_until_below(tmp_path):
    limit = 400 * MB  # pause above 320 MB resident, terminate above 380 MB
    async with cli_scheduler() as (address, _):
        worker, lines = await start_logged_worker(
            address, "--name", "pw", "--memory-limit", "400MB",
            "--local-directory", str(tmp_path))
        listener = trio.socket.socket()
        try:
            await listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            async with trioflow.AsyncClient(address) as client:
                await client.wait_for_workers(1, timeout=30)
                rss = await client.submit(hold_memory, int(0.87 * limit), port)
                assert 0.8 * limit < rss < 0.95 * limit
                await lines.wait_for("paused: no new runs")  # (its 0.1 s memory watch)
                later = client.submit(ran_after_release, pure=False)
                await lines.wait_for("a run waits to start (paused)")
                conn, _ = await listener.accept()
                with conn:
                    await conn.send(b"x")  # the task's thread frees the memory
                    assert await later is True  # it started only once below pause
                await lines.wait_for("resumed")
                assert worker.returncode is None
        finally:
            listener.close()
            await stop(worker)


async def test_unspillable_values_stay_in_memory_and_spilled_ones_are_served():
    async with trioflow.open_local_cluster(1, 1, memory_limit="10MB") as cluster:
        memory = cluster.workers[0].store.memory
        assert memory is not None and memory.limit == 10 * MB
        async with trioflow.AsyncClient(cluster.address) as client:
            odd = client.submit(make_unpicklable)
            with pytest.raises(trioflow.SerializationError, match=r"cannot be sent.*a lock"):
                await odd  # it cannot travel, and the client is told why
            await memory.wait_for(lambda m: odd.key in m.unspillable)
            assert await client.submit(data_size, odd) == 8 * MB  # still usable here
            big = client.submit(make_bytes, 8 * MB)
            await big
            other = client.submit(make_bytes, 7 * MB)
            await other
            # over the 6 MB target: the least recently used spillable value went to disk
            await memory.wait_for(lambda m: big.key in m.on_disk)
            assert big.key not in cluster.workers[0].store.data
            assert await client.submit(size, big) == 8 * MB  # read back for a run
            assert await big == make_bytes(8 * MB)  # served to the client from its file
            assert odd.key in memory.unspillable and odd.key not in memory.on_disk


async def test_a_local_clusters_workers_spill_into_its_local_directory(tmp_path):
    async with trioflow.open_local_cluster(1, 1, memory_limit="10MB",
                                           local_directory=tmp_path) as cluster:
        memory = cluster.workers[0].store.memory
        assert memory is not None and memory.base == str(tmp_path)
        async with trioflow.AsyncClient(cluster.address) as client:
            big, other = client.submit(make_bytes, 8 * MB), client.submit(make_bytes, 7 * MB)
            await trioflow.wait_async([big, other])
            await memory.wait_for(lambda m: bool(m.on_disk))
            assert any(p.name.startswith(SPILL_PREFIX) for p in tmp_path.iterdir())


async def test_auto_shares_the_machine_among_a_local_clusters_workers():
    async with trioflow.open_local_cluster(2, 1, memory_limit="auto") as cluster:
        limits = {node.store.memory.limit for node in cluster.workers}
        assert limits == {system_memory() // 2}
    async with trioflow.open_local_cluster(1, 1) as cluster:
        assert cluster.workers[0].store.memory is None  # no limit unless asked


PAUSED_AT_RUN = []


def note_pause(name):
    """Inside an in-process worker: whether it was paused when this run went ahead."""
    PAUSED_AT_RUN.append(PAUSING[name].store.memory.paused)
    return "ran"


PAUSING: dict = {}


async def test_a_paused_worker_starts_no_new_run_until_it_resumes():
    async with trioflow.open_local_cluster(1, 1) as cluster, trio.open_nursery() as nursery:
        # a worker watching its (this test process's) resident memory, with a pause
        # fraction it is above at once and no spilling or terminating
        node = WorkerNode(cluster.address, name="pausing", memory_limit=10**9,
                          on_memory_terminate=lambda: None)
        memory = node.store.memory
        memory.pause, memory.spill, memory.terminate = 1e-6, float("inf"), float("inf")
        PAUSING["pausing"] = node
        PAUSED_AT_RUN.clear()
        nursery.start_soon(node.serve)
        async with trioflow.AsyncClient(cluster.address) as client:
            await client.wait_for_workers(2, timeout=30)
            await memory.wait_for(lambda m: m.paused)
            fut = client.submit(note_pause, "pausing", workers=["pausing"])
            await trio.to_thread.run_sync(memory.wait_held, abandon_on_cancel=True)
            assert not fut.done()  # held at the gate, not run
            # the other worker is unaffected
            assert await client.submit(size, b"abc", workers=["worker-0"]) == 3
            memory.pause = float("inf")  # the next look at its memory resumes it
            assert await fut == "ran" and PAUSED_AT_RUN == [False]
        nursery.cancel_scope.cancel()


@contextlib.contextmanager
def tiny_disk(path):
    """A 1 MB tmpfs at ``path`` (needs root); skips the test where it cannot mount."""
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


#: runs of ``make_counted`` in this process (the in-process worker's)
MADE: list[int] = []


def make_counted(n):
    MADE.append(n)
    return make_bytes(n)


async def test_a_full_disk_fails_the_key_and_the_worker_keeps_serving(tmp_path, caplog):
    with tiny_disk(tmp_path / "disk") as disk:
        async with trioflow.open_local_cluster(1, 1) as cluster, trio.open_nursery() as nursery:
            node = WorkerNode(cluster.address, name="spiller", memory_limit=10 * MB,
                              local_directory=str(disk))
            nursery.start_soon(node.serve)
            async with trioflow.AsyncClient(cluster.address) as client:
                await client.wait_for_workers(2, timeout=30)
                here = ["spiller"]
                MADE.clear()
                # 8 MB over a 6 MB target: spilled at once, into a 1 MB disk. The
                # dependent's run waits at the memory gate until that is settled.
                big = client.submit(make_counted, 8 * MB, workers=here)
                dependent = client.submit(size, big, workers=here)
                with pytest.raises(SpillError) as info:
                    await dependent
                text = str(info.value)
                assert big.key in text and node.store.memory.directory in text
                assert str(disk) in text and "No space left on device" in text
                assert "--local-directory" in text and "free space" in text
                with pytest.raises(SpillError):
                    await big  # the key itself failed, with the same reason
                assert "No space left on device" in caplog.text
                memory = node.store.memory
                assert big.key not in node.store.data and memory.held == 0  # freed
                assert await client.submit(size, b"more work", workers=here) == 9
                assert MADE == [8 * MB]  # never recomputed
            nursery.cancel_scope.cancel()


async def test_over_the_terminate_fraction_the_worker_exits_to_be_restarted(tmp_path):
    async with cli_scheduler() as (address, _):
        # a limit below what the bare process needs: terminate at once (its spill
        # directory stays behind, for the next start to remove: so not in /tmp here)
        worker = await trio.lowlevel.open_process(
            [PY, "-m", "trioflow.cli", "worker", address, "--memory-limit", "20MB",
             "--local-directory", str(tmp_path)], stderr=subprocess.PIPE)
        try:
            err = b""
            while chunk := await worker.stderr.receive_some(65536):
                err += chunk
            assert await worker.wait() == EXIT_RESTART
        finally:
            await stop(worker)
        assert b"exiting to be restarted" in err


async def test_bad_memory_limit_is_refused_with_a_clear_message():
    done = await trio.run_process(
        [PY, "-m", "trioflow.cli", "worker", "ws://127.0.0.1:1", "--memory-limit", "lots"],
        capture_stderr=True, check=False)
    assert done.returncode == 2 and b"give bytes with a unit" in done.stderr
