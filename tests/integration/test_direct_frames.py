"""Frames written by the task that produced them (``PeerConnection.send_many``) on a
real cluster of CLI processes: a client's sequential round trips leave as one frame
each (the release of the last future with the next submit; exactly how they are batched
is ``tests/unit/test_session_flush.py``'s), written without a writer wake-up (by the
submitting thread itself, or by the loop's flush), and everything still arrives in order."""

from __future__ import annotations

import pytest
import trio

import trioflow

from .clihelpers import cli_scheduler, start_worker, stop

pytestmark = pytest.mark.slow


def inc(x: int) -> int:
    return x + 1


def _round_trips(address: str) -> tuple[list[int], int, int, int, int]:
    with trioflow.Client(address) as client:
        client.wait_for_workers(1)
        client.submit(inc, 0).result(30)  # (the function is registered by now)
        conn = client._session.conn
        frames, direct, thread = conn.frames_sent, conn.direct_frames, conn.thread_frames
        got = []
        for i in range(20):
            got.append(client.submit(inc, i).result(30))  # its future dies at once
        return (got, conn.frames_sent - frames, conn.direct_frames - direct,
                conn.thread_frames - thread, 20)


async def test_sequential_round_trips_leave_as_one_frame_each_and_in_order():
    with trio.fail_after(60):
        async with cli_scheduler() as (address, _):
            worker = await start_worker(address, "--name", "w0", "--nthreads", "1")
            try:
                got, frames, direct, thread, n = await trio.to_thread.run_sync(_round_trips, address)
            finally:
                await stop(worker)
    assert got == [i + 1 for i in range(n)]
    # one frame per round trip: the submit carries the release of the future before
    # it. (A release the loop flushes before the user thread's next submit is posted
    # goes alone: a thread race, rare; two frames per round trip would mean none rode.)
    assert n <= frames < 2 * n
    assert direct >= 1  # (written by the thread or the loop's own flush: no writer turn)
    assert thread >= 1  # (the submitting thread wrote it: the loop was not woken for it)
