"""Unauthenticated peers that die at any handshake step, send oversized or slow frames,
or flood the port: each costs the scheduler one connection, briefly, and little memory;
nothing stops it, and a normal client is served after every attack."""

from __future__ import annotations

import re
import subprocess

import pytest
import trio

import trioflow
from trioflow.net import handshake_limits
from trioflow.testing.hostile import flood, logged_errors, run_steps

from .clihelpers import PY, read_line, stop

#: every way a connection can die before (or just after) authentication
DEATHS = {
    "before_request": [],
    "mid_request": ["partial_request"],
    "before_upgrade_answer": ["request"],
    "after_upgrade": ["request", "read_upgrade"],
    "mid_frame_before_hello": ["request", "read_upgrade", "partial_frame"],
    "after_hello": ["request", "read_upgrade", "hello"],
    "after_worker_hello": ["request", "read_upgrade", "worker_hello"],
    "mid_frame_after_hello": ["request", "read_upgrade", "hello", "partial_frame"],
    "garbage_after_upgrade": ["request", "read_upgrade", "garbage"],
}


@pytest.fixture
def errors():
    with logged_errors() as records:
        yield records


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


async def served(address: str) -> None:
    async with trioflow.AsyncClient(address) as client:
        assert await client.submit(abs, -3) == 3
        assert len((await client.status())["workers"]) == 1


@pytest.mark.parametrize("end", ["reset", "close"])
@pytest.mark.parametrize("death", list(DEATHS), ids=list(DEATHS))
async def test_connection_dying_at_any_step_costs_only_itself(death, end, errors):
    async with trioflow.open_local_cluster(1, 1, processes=False) as cluster:
        for _ in range(3):  # the crash needed a few tries
            await run_steps(port_of(cluster.address), DEATHS[death], end)
        await served(cluster.address)
    assert not errors, [r.getMessage() for r in errors]


async def test_peer_left_before_its_request_is_closed_at_once():
    """A flood of connections closed (or reset) before sending an HTTP request: the
    server must notice each at once, not hold its descriptor for the upgrade timeout.
    Proof without timing the kernel: connections that half-close get the server's EOF
    well before the timeout could have closed them."""
    async with trioflow.open_local_cluster(1, 1, processes=False) as cluster:
        port = port_of(cluster.address)
        await flood(port, 200, end="reset")
        await flood(port, 200, end="close")
        with trio.fail_after(handshake_limits.UPGRADE_TIMEOUT * 0.8):
            streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(100)]
            async with trio.open_nursery() as nursery:
                for s in streams:
                    nursery.start_soon(_half_close_and_wait, s)
        await served(cluster.address)


async def _half_close_and_wait(stream):
    await stream.send_eof()
    assert await stream.receive_some(100) == b""
    await stream.aclose()


async def test_connections_that_never_send_a_request_are_closed_after_the_timeout(monkeypatch):
    from trioflow.net import scheduler_server

    monkeypatch.setattr(scheduler_server, "UPGRADE_TIMEOUT", 0.5)
    async with trioflow.open_local_cluster(1, 1, processes=False) as cluster:
        # the whole flood is closed by the server: none is held past the timeout
        with trio.fail_after(10):
            await flood(port_of(cluster.address), 300, end="wait")
        await served(cluster.address)


async def test_slow_unauthenticated_frames_are_dropped_at_the_hello_timeout(monkeypatch):
    from trioflow.net import scheduler_server

    monkeypatch.setattr(scheduler_server, "HANDSHAKE_TIMEOUT", 0.5)
    async with trioflow.open_local_cluster(1, 1, processes=False) as cluster:
        port = port_of(cluster.address)
        # trickles a 46-byte frame over ~2.3 s: the server gives up after 0.5 s
        outcome = await run_steps(port, ["request", "read_upgrade", "slow_frame"], "wait",
                                  slow_delay=0.05)
        assert outcome["ended"] == "server_closed"
        await served(cluster.address)


def _peak_rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) // 1024


async def test_oversized_unauthenticated_frames_are_refused_while_reading():
    """Three 64 MB first frames at once: refused after a few hundred KiB each (the
    kernel's socket buffers take more than the scheduler does), and the scheduler's
    peak RSS barely moves. Before the fix it grew by 128 MiB per frame."""
    proc = await trio.lowlevel.open_process(
        [PY, "-m", "trioflow.cli", "scheduler", "--port", "0", "--log-level", "error"],
        stdout=subprocess.PIPE)
    try:
        address = await read_line(proc)
        await served_without_workers(address)  # warm: imports and first connection done
        before = _peak_rss_mib(proc.pid)
        outcomes = []

        async def attack():
            outcomes.append(await run_steps(port_of(address), ["request", "read_upgrade",
                                                               "oversized_frame"]))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(attack)
        assert all(o["ended"] == "server_closed" for o in outcomes), outcomes
        await served_without_workers(address)
        # generous: the frames alone would be +384 MiB; what is left is noise
        assert _peak_rss_mib(proc.pid) - before < 48
    finally:
        await stop(proc)


async def served_without_workers(address: str) -> None:
    async with trioflow.AsyncClient(address) as client:
        assert (await client.status())["workers"] == []
