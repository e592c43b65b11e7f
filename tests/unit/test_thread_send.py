"""Messages written to the connection by the thread that posted them
(``PeerConnection.send_from_thread``, ``Outbox._thread_send``), over real loopback
sockets (issue 12: a blocking client's submit and a task thread's result each cost the
loop a wake-up and a turn before they left).

* a thread writes its frame at once when the writer is parked with nothing queued, and
  not while the loop has a frame queued, nor while ``linger`` wants to wait for more;
* frames written from a thread and from the loop at the same time arrive whole, and
  each side's in its own order, also when the kernel takes them only in part;
* a session's thread writes only when nothing posted before is still queued or held by
  a flush, and once until the loop has had a turn (a burst leaves in the loop's frame);
  the releases waiting for a flush go first in the thread's frame.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import trio
import trio.testing

from trioflow import protocol as p
from trioflow.engine.session import Session

from .test_send_now import receive_all, writing_pair
from .test_websocket_direct import tcp_pair, ws_pair


async def test_a_thread_writes_at_once_while_the_writer_is_parked():
    with trio.fail_after(10):
        async with writing_pair() as (sender, receiver):
            messages = [p.FreeKeys(["a"]), p.FreeKeys(["b"])]
            assert await trio.to_thread.run_sync(sender.send_from_thread, messages)
            assert (sender.thread_frames, sender.frames_sent, sender.messages_sent) == (1, 1, 2)
            assert await receive_all(receiver, 2) == messages


def on_a_thread(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` on another thread, while this one (the loop) waits for it: nothing
    on the loop runs meanwhile."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn(*args)))
    thread.start()
    thread.join()
    return out[0]


async def test_a_thread_does_not_write_past_a_queued_frame_or_a_linger():
    with trio.fail_after(10):
        async with writing_pair() as (sender, receiver):
            sender.send(p.FreeKeys(["queued"]))  # (the writer has not run yet)
            assert not on_a_thread(sender.send_from_thread, [p.FreeKeys(["later"])])
            assert await receive_all(receiver, 1) == [p.FreeKeys(["queued"])]
            await trio.testing.wait_all_tasks_blocked()
            more = [True]
            sender.linger = lambda: more[0]
            assert not on_a_thread(sender.send_from_thread, [p.FreeKeys(["held"])])
            more[0] = False
            assert on_a_thread(sender.send_from_thread, [p.FreeKeys(["now"])])
            assert await receive_all(receiver, 1) == [p.FreeKeys(["now"])]
            assert sender.thread_frames == 1


async def test_frames_from_a_thread_and_the_loop_at_once_arrive_whole_and_in_order():
    with trio.fail_after(20):
        c, s = await tcp_pair()
        for stream in (c, s):  # frames larger than the buffers: most are sent in part
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sender, receiver = ws_pair(c, s)
        n = 100
        pad = bytes(range(256)) * 200
        done, stop = threading.Event(), threading.Event()

        def from_a_thread() -> None:
            try:
                for i in range(n):
                    while not sender.send_message_nowait(b"t%04d" % i + pad):
                        if stop.is_set():  # (the test failed: end with it)
                            return
                        time.sleep(0)  # (the loop is sending, or the kernel is full)
            finally:
                done.set()

        async def from_the_loop() -> None:
            for i in range(n):
                await sender.send_message(b"l%04d" % i + pad)
            while not done.is_set():  # (a thread's tail is written by the loop)
                await sender.drain()
                await trio.sleep(0)
            await sender.drain()

        async def stop_when_cancelled() -> None:
            try:
                await trio.sleep_forever()
            finally:
                stop.set()  # (the test failed: the thread ends with it)

        got: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_when_cancelled)
            nursery.start_soon(trio.to_thread.run_sync, from_a_thread)
            nursery.start_soon(from_the_loop)
            while len(got) < 2 * n:
                got.append(await receiver.get_message())  # type: ignore[arg-type]
            nursery.cancel_scope.cancel()
        assert all(m[5:] == pad for m in got)
        assert [m[:5] for m in got if m[:1] == b"t"] == [b"t%04d" % i for i in range(n)]
        assert [m[:5] for m in got if m[:1] == b"l"] == [b"l%04d" % i for i in range(n)]


class ThreadRecording:
    """A connection that records what is handed to it, and what a thread wrote."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.accept = True

    def send(self, message: Any) -> None:
        self.batches.append(("loop", [_name(message)]))

    def send_many(self, messages: list[Any]) -> None:
        self.batches.append(("loop", [_name(m) for m in messages]))

    def send_from_thread(self, messages: list[Any]) -> bool:
        if self.accept:
            self.batches.append(("thread", [_name(m) for m in messages]))
        return self.accept

    async def flush(self) -> None:
        pass


def _name(message: Any) -> str:
    if type(message) is p.ReleaseKeys:
        return "release " + ",".join(message.keys)
    return str(message.keys[0])


async def test_a_sessions_thread_writes_its_post_with_the_releases_waiting_for_a_flush():
    with trio.fail_after(10):
        conn = ThreadRecording()
        session = Session(conn, "c1")  # type: ignore[arg-type]
        outbox = session.outbox
        with session.lock:  # (what a future's last decref on a thread leaves queued)
            session.table.releasing["k1"] = object()  # type: ignore[assignment]
            outbox._release_scheduled = True
            outbox._queue.append(outbox._release_call)
            outbox._flush_scheduled = True  # (the flush itself is run below)

        def post() -> None:
            session.post(p.FreeKeys(["a"]))

        await trio.to_thread.run_sync(post)
        assert conn.batches == [("thread", ["release k1", "a"])]
        outbox._flush()  # the flush that decref scheduled: nothing left for it
        assert not outbox._queue and not outbox._flush_scheduled
        conn.accept = False  # (the writer is busy): the loop sends it, in order
        await trio.to_thread.run_sync(post)
        await trio.testing.wait_all_tasks_blocked()
        assert conn.batches[1:] == [("loop", ["a"])]


async def test_a_burst_of_posts_from_a_thread_leaves_in_the_loops_frame():
    with trio.fail_after(10):
        conn = ThreadRecording()
        session = Session(conn, "c1")  # type: ignore[arg-type]

        def burst() -> None:  # (a map: one submit after another)
            for key in "abcd":
                session.post(p.FreeKeys([key]))

        on_a_thread(burst)  # (the loop has no turn meanwhile)
        await trio.testing.wait_all_tasks_blocked()
        # the first at once; the rest wait for the loop, which sends them together
        assert conn.batches == [("thread", ["a"]), ("loop", ["b", "c", "d"])]
        await trio.to_thread.run_sync(session.post, p.FreeKeys(["e"]))  # (the loop ran)
        assert conn.batches[2:] == [("thread", ["e"])]


async def test_a_thread_does_not_write_past_what_a_flush_holds():
    with trio.fail_after(10):
        conn = ThreadRecording()
        session = Session(conn, "c1")  # type: ignore[arg-type]
        handing_over = conn.send_many

        def send_many(messages: list[Any]) -> None:  # the flush hands "a", "b" over
            handing_over(messages)
            if messages[0].keys == ["a"]:  # a thread posts while they are being handed over
                on_a_thread(session.post, p.FreeKeys(["c"]))

        conn.send_many = send_many  # type: ignore[method-assign]

        def from_a_thread() -> None:
            conn.accept = False  # (say the writer is busy): both go to the queue
            session.post(p.FreeKeys(["a"]), p.FreeKeys(["b"]))
            conn.accept = True

        await trio.to_thread.run_sync(from_a_thread)
        await trio.testing.wait_all_tasks_blocked()
        assert conn.batches == [("loop", ["a", "b"]), ("loop", ["c"])]
