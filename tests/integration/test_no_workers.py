"""Tasks no connected worker can run fail with NoWorkersError after the timeout."""

from __future__ import annotations

import pytest

import trioflow

from .clihelpers import cli_scheduler


async def test_restricted_to_a_worker_that_is_not_connected():
    async with trioflow.open_local_cluster(1, 1, processes=False,
                                           no_workers_timeout=0.3) as cluster:
        async with trioflow.AsyncClient(cluster.address) as client:
            ghost = client.submit(abs, -1, workers=["ghost"])
            child = client.submit(abs, ghost)
            with pytest.raises(trioflow.NoWorkersError,
                               match="restricted to worker 'ghost', which is not connected"):
                await ghost
            with pytest.raises(trioflow.NoWorkersError, match=r"task .* could not run"):
                await child
            assert await client.submit(abs, -2) == 2  # unrestricted work still runs


async def test_scheduler_cli_without_workers():
    async with cli_scheduler("--no-workers-timeout", "0.3") as (address, _):
        async with trioflow.AsyncClient(address) as client:
            with pytest.raises(trioflow.NoWorkersError, match="no worker is connected") as info:
                await client.submit(abs, -1)
            assert "--no-workers-timeout" in str(info.value)
