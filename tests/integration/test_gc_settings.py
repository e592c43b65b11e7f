"""The garbage collector's settings (``cli.common.tune_gc``): the processes trioflow
owns (the scheduler and worker CLIs, also a local cluster's worker processes) freeze
their start-up objects and collect less often; a user's process keeps its own settings,
also when it runs a local cluster's scheduler in-process."""

from __future__ import annotations

import gc
import sys

import pytest
import trio

import trioflow
from trioflow import config

from .clihelpers import cli_scheduler, start_worker, stop

pytestmark = pytest.mark.slow


def gc_settings() -> tuple[tuple[int, ...], int]:
    return tuple(gc.get_threshold()), gc.get_freeze_count()


async def test_a_cli_worker_runs_with_the_tuned_collector():
    with trio.fail_after(60):
        async with cli_scheduler() as (address, _):
            worker = await start_worker(address, "--name", "w0")
            try:
                async with trioflow.AsyncClient(address) as client:
                    await client.wait_for_workers(1, timeout=30)
                    thresholds, frozen = await client.submit(gc_settings)
            finally:
                await stop(worker)
    assert tuple(thresholds) == config.GC_THRESHOLDS
    assert frozen > 1000  # (its imports: tens of thousands of objects)


async def test_the_scheduler_cli_tunes_the_collector_before_it_serves():
    # scheduler_main up to its trio.run, in a fresh interpreter: what the loop would
    # start with
    code = (
        "import gc, trio\n"
        "from trioflow.cli import scheduler\n"
        "trio.run = lambda main: print(tuple(gc.get_threshold()), gc.get_freeze_count())\n"
        "scheduler.scheduler_main(['--port', '0', '--dashboard-address', 'none'])\n"
    )
    with trio.fail_after(60):
        done = await trio.run_process([sys.executable, "-c", code], capture_stdout=True)
    thresholds, frozen = done.stdout.decode().rsplit(")", 1)
    assert thresholds + ")" == str(config.GC_THRESHOLDS)
    assert int(frozen) > 1000


def _local_cluster() -> tuple[object, object, object]:
    with trioflow.Client(workers=1, threads_per_worker=1) as client:  # processes
        thresholds, _ = client.submit(gc_settings).result(30)
        return tuple(thresholds), gc_settings(), client


async def test_a_local_cluster_leaves_the_users_process_alone():
    before = gc_settings()
    with trio.fail_after(60):
        worker_thresholds, during, _ = await trio.to_thread.run_sync(_local_cluster)
    assert worker_thresholds == config.GC_THRESHOLDS  # (its worker is a process of ours)
    assert during == before and gc_settings() == before
