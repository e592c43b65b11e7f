"""A worker's bulk port against unauthenticated peers: nothing a peer declares is read
or allocated before its token is checked, a connection dying at any step costs only
itself, and the worker's own transfers keep working."""

from __future__ import annotations

import re

import pytest
import trio

import trioflow
from trioflow.net import bulk
from trioflow.testing.hostile import run_steps

from .clihelpers import cli_scheduler, start_worker, stop

pytestmark = pytest.mark.slow

TOKEN = {"TRIOFLOW_TOKEN": "bulk-s3cret"}

ATTACKS = {
    "reset_at_once": [],
    "hello_without_token": ["bulk_hello_no_token"],
    "put_128mb_without_hello": ["bulk_put_128mb"],
    "huge_header": ["bulk_huge_header"],
    "partial_header": ["bulk_partial_header"],
    "garbage": ["garbage"],
}


def _peak_rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) // 1024


def _big(n):
    return b"y" * n


async def test_bulk_port_checks_the_token_before_reading_frames():
    async with cli_scheduler(env=TOKEN) as (address, _):
        worker = await start_worker(address, "--name", "w", env=TOKEN)
        try:
            async with trioflow.AsyncClient(address, token=TOKEN["TRIOFLOW_TOKEN"]) as client:
                await client.wait_for_workers(1, timeout=30)
                # one large result first: the worker's bulk path and memory are warm
                first = client.submit(_big, 300_000)
                assert len(await first) == 300_000
                info = (await client.status())["workers"][0]
                port = int(info["data_address"].rsplit(":", 1)[1])
                before = _peak_rss_mib(worker.pid)
                # three token-less headers declaring 128 MB frames, held open
                async with trio.open_nursery() as nursery:
                    for _ in range(3):
                        nursery.start_soon(run_steps, port, ["bulk_put_128mb"], "wait")
                for steps in ATTACKS.values():
                    for end in ("reset", "close"):
                        await run_steps(port, steps, end)
                # generous bound: each declared frame would be +128 MiB
                assert _peak_rss_mib(worker.pid) - before < 48
                second = client.submit(_big, 300_001)  # fetched over the bulk port
                assert len(await second) == 300_001
        finally:
            await stop(worker)


async def test_bulk_hello_must_come_within_the_handshake_timeout(monkeypatch):
    """In-process: a silent peer and a trickling one are dropped at the deadline."""
    monkeypatch.setattr(bulk, "HANDSHAKE_TIMEOUT", 0.3)

    async def get(keys):
        return [], [], keys

    async with trio.open_nursery() as nursery:
        address = await nursery.start(lambda task_status: bulk.serve_bulk(
            get, None, "127.0.0.1", token="t", ssl_context=None, task_status=task_status))
        port = int(address.rsplit(":", 1)[1])
        for steps in ([], ["bulk_partial_header"]):
            outcome = await run_steps(port, steps, "wait")
            assert outcome["ended"] == "server_closed"
        pool = bulk.BulkPool(token="t", ssl_context=None)
        assert await pool.get(address, ["x"]) == ({}, ["x"])
        await pool.aclose()
        nursery.cancel_scope.cancel()
