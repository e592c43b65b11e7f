"""``--scheduler-file``, as dask's: the scheduler writes where it listens, a worker
started before it waits for the file, and clients connect by the file alone."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest
import trio

import trioflow

from .clihelpers import PY, cli_scheduler, stop


def _blocking_client(path):
    with trioflow.Client(scheduler_file=path) as client:
        client.wait_for_workers(n_workers=1, timeout=30)
        assert list(client.nthreads()) == ["filed"]
        return client.submit(pow, 2, 10).result(30)


async def test_a_worker_started_first_waits_for_the_file_then_everyone_meets(tmp_path):
    path = tmp_path / "scheduler.json"
    # the worker first, as on a batch system where they start at once: it waits
    worker = await trio.lowlevel.open_process(
        [PY, "-m", "trioflow.cli", "worker", "--scheduler-file", str(path), "--name", "filed",
         "--death-timeout", "60"], env=dict(os.environ))
    try:
        async with cli_scheduler("--scheduler-file", str(path)) as (address, _):
            info = json.loads(path.read_text())
            assert info["type"] == "Scheduler" and info["address"] == address
            assert info["id"].startswith("scheduler-") and info["dashboard"]
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert await trio.to_thread.run_sync(_blocking_client, str(path)) == 1024
            async with trioflow.AsyncClient(scheduler_file=path) as client:
                assert await client.submit(pow, 3, 2) == 9
    finally:
        await stop(worker)


async def test_a_missing_or_wrong_scheduler_file_is_an_error_that_says_so(tmp_path):
    missing = tmp_path / "nope.json"
    proc = await trio.run_process(
        [PY, "-m", "trioflow.cli", "worker", "--scheduler-file", str(missing),
         "--death-timeout", "0.3"], capture_stderr=True, check=False)
    assert proc.returncode != 0
    assert b"no scheduler file at" in proc.stderr and b"--scheduler-file" in proc.stderr
    both = await trio.run_process(
        [PY, "-m", "trioflow.cli", "worker", "ws://127.0.0.1:1", "--scheduler-file",
         str(missing)], capture_stderr=True, check=False, stdout=subprocess.DEVNULL)
    assert both.returncode == 2 and b"one of them" in both.stderr
    with pytest.raises(TimeoutError, match="no scheduler file"):
        trioflow.Client(scheduler_file=missing, timeout=0.2)
    with pytest.raises(TypeError, match="not both"):
        trioflow.AsyncClient("ws://127.0.0.1:1", scheduler_file=missing)
