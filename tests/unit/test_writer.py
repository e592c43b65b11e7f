"""PeerConnection's writer: batching, and dropping a peer that does not read."""

import trio
import trio.testing

from trioflow import protocol as p
from trioflow.core import fold
from trioflow.net.connection import (
    CLOSE_TOO_SLOW,
    LINGER_MAX,
    LINGER_SOFT,
    MAX_BATCH_MESSAGES,
    PeerConnection,
)


class StubSocket:
    """Records frames; ``stall`` makes send_message block forever."""

    #: (a stub never writes a frame in part: see WebSocket.send_message_nowait)
    unsent = False

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


class TimedSocket(StubSocket):
    """Also records when (Trio time) each frame went out."""

    def __init__(self):
        super().__init__()
        self.times = []

    async def send_message(self, frame):
        self.times.append(trio.current_time())
        await super().send_message(frame)


async def test_a_message_queued_late_in_a_linger_ends_it_without_the_deadline(autojump_clock):
    ws = TimedSocket()
    conn = PeerConnection(ws)
    conn.linger = lambda: True  # as a worker with short tasks running says
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.run_writer)
            start = trio.current_time()
            conn.send(p.FreeKeys(["a"]))
            await trio.sleep(LINGER_SOFT * LINGER_MAX / 2)  # early: held, writer not woken
            conn.send(p.FreeKeys(["b"]))
            await trio.testing.wait_all_tasks_blocked()
            assert ws.frames == []
            await trio.sleep(LINGER_SOFT * LINGER_MAX / 2 + (1 - LINGER_SOFT) * LINGER_MAX / 2)
            conn.send(p.FreeKeys(["c"]))  # past the soft point, before the deadline
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert ws.frames == [[p.FreeKeys(["a"]), p.FreeKeys(["b"]), p.FreeKeys(["c"])]]
    assert ws.times[0] - start < LINGER_MAX
    assert (conn.lingers, conn.lingers_timed_out) == (1, 0)


async def test_a_linger_nothing_more_comes_in_ends_at_the_deadline(autojump_clock):
    ws = TimedSocket()
    conn = PeerConnection(ws)
    conn.linger = lambda: True
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.run_writer)
            start = trio.current_time()
            conn.send(p.FreeKeys(["a"]))
            await trio.sleep(10 * LINGER_MAX)
            nursery.cancel_scope.cancel()
    assert ws.frames == [[p.FreeKeys(["a"])]]
    assert LINGER_MAX <= ws.times[0] - start < 2 * LINGER_MAX
    assert (conn.lingers, conn.lingers_timed_out) == (1, 1)


async def test_an_idle_connection_does_not_linger():
    ws = StubSocket()
    conn = PeerConnection(ws)
    conn.linger = lambda: False
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.run_writer)
            conn.send(p.FreeKeys(["a"]))
            await trio.testing.wait_all_tasks_blocked()
            assert ws.frames == [[p.FreeKeys(["a"])]]
            nursery.cancel_scope.cancel()
    assert conn.lingers == 0


async def test_the_fold_hook_merges_a_slot_report_into_the_message_queued_before_it():
    ws = StubSocket()
    conn = PeerConnection(ws)
    conn.fold = fold.fold
    done = p.TaskFinished("a", 1, 0, None)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            conn.send(p.Seceded("p", 1))  # first in the outbox: on its own
            conn.send(done)
            conn.send(p.Rejoined("p", 1))
            nursery.start_soon(conn.run_writer)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert ws.frames == [[p.Seceded("p", 1), fold.fold(done, p.Rejoined("p", 1))]]
    assert conn.messages_sent == 2
