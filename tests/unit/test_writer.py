"""PeerConnection's writer: batching, and dropping a peer that does not read."""

import trio
import trio.testing

from trioflow import protocol as p
from trioflow.net.connection import CLOSE_TOO_SLOW, MAX_BATCH_MESSAGES, PeerConnection


class StubSocket:
    """Records frames; ``stall`` makes send_message block forever."""

    def __init__(self, stall=False):
        self.stall = stall
        self.frames = []
        self.closed_with = None

    async def send_message(self, frame):
        if self.stall:
            await trio.sleep_forever()
        self.frames.append(p.decode_frame(frame))

    async def aclose(self, code=1000, reason=""):
        self.closed_with = code

    async def abort(self):
        self.closed_with = "aborted"


async def test_messages_queued_together_leave_as_one_frame():
    ws = StubSocket()
    conn = PeerConnection(ws)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run_writer)
        conn.send(p.FreeKeys(["a"]))
        conn.send(p.FreeKeys(["b"]))
        await trio.testing.wait_all_tasks_blocked()
        conn.send(p.FreeKeys(["c"]))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert ws.frames == [[p.FreeKeys(["a"]), p.FreeKeys(["b"])], [p.FreeKeys(["c"])]]
    assert (conn.frames_sent, conn.messages_sent) == (2, 3)


async def test_a_long_queue_leaves_in_bounded_frames_at_once_and_in_order():
    ws = StubSocket()
    conn = PeerConnection(ws)
    n = 2 * MAX_BATCH_MESSAGES + 5
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run_writer)
        for i in range(n):
            conn.send(p.FreeKeys([str(i)]))
        await trio.testing.wait_all_tasks_blocked()  # nothing new woke the writer
        nursery.cancel_scope.cancel()
    assert [len(f) for f in ws.frames] == [MAX_BATCH_MESSAGES, MAX_BATCH_MESSAGES, 5]
    assert [m.keys[0] for f in ws.frames for m in f] == [str(i) for i in range(n)]


async def test_flush_sends_a_long_queue_in_bounded_frames():
    ws = StubSocket()
    conn = PeerConnection(ws)
    for i in range(MAX_BATCH_MESSAGES + 1):
        conn.send(p.FreeKeys([str(i)]))
    await conn.flush()
    assert [len(f) for f in ws.frames] == [MAX_BATCH_MESSAGES, 1]


async def test_a_peer_that_does_not_read_is_dropped_after_the_send_timeout(autojump_clock):
    ws = StubSocket(stall=True)
    conn = PeerConnection(ws)
    conn.send_timeout = 5.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run_heartbeats)
        await trio.sleep(3.0)  # idle: heartbeats only queue
        start = trio.current_time()
        nursery.start_soon(conn.run_writer)
        conn.send(p.FreeKeys(["a"]))
        while ws.closed_with is None:
            await trio.sleep(0.1)
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert ws.closed_with == CLOSE_TOO_SLOW and conn.closed
    assert 5.0 <= elapsed <= 5.0 + conn.heartbeat_interval + 0.2


async def test_no_timeout_while_frames_keep_going_out(autojump_clock):
    ws = StubSocket()
    conn = PeerConnection(ws)
    conn.send_timeout = 0.5
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run_writer)
        nursery.start_soon(conn.run_heartbeats)
        for i in range(20):
            conn.send(p.FreeKeys([str(i)]))
            await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert ws.closed_with is None and not conn.closed


async def test_a_peer_silent_for_the_silence_timeout_is_dropped(autojump_clock):
    ws = StubSocket()
    conn = PeerConnection(ws)
    conn.silence_timeout = 10.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run_heartbeats)
        for _ in range(5):  # something arrives every 4 s: kept
            await trio.sleep(4.0)
            conn.last_received = trio.current_time()
        assert ws.closed_with is None
        start = trio.current_time()
        while ws.closed_with is None:
            await trio.sleep(0.5)
        elapsed = trio.current_time() - start
    assert ws.closed_with == "aborted" and conn.closed
    assert 10.0 <= elapsed <= 10.5
