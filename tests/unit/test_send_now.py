"""A scheduler's sends from the reader's task (``PeerConnection.send_many``) and frames
read together handled as one batch (``PeerConnection.receive``), over real loopback
sockets (issue 12: two loop turns per frame sent on the latency path).

* with the writer idle and nothing else runnable, the messages leave at once as one
  frame written by the caller, and arrive in order;
* with another task runnable, or while the writer has a frame queued, they go through
  the writer, after what was queued before them;
* a frame the kernel takes only in part is finished before anything else goes out;
* a ``linger`` hook holds a batch only while it says more is coming;
* frames that were read off the socket together come back from one ``receive``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import trio
import trio.testing

from trioflow import protocol as p
from trioflow.net.connection import PeerConnection
from trioflow.net.websocket import WebSocket
from trioflow.protocol import wsframe

from .test_websocket_direct import LIMIT, tcp_pair


def conn_pair(client: trio.SocketStream, server: trio.SocketStream,
              buffer: int = 65536) -> tuple[PeerConnection, PeerConnection]:
    a = WebSocket(client, client=True, max_message_size=LIMIT, receive_buffer_size=buffer)
    b = WebSocket(server, client=False, max_message_size=LIMIT, receive_buffer_size=buffer)
    return PeerConnection(a, name="a"), PeerConnection(b, name="b")


async def receive_all(conn: PeerConnection, n: int) -> list[object]:
    got: list[object] = []
    while len(got) < n:
        got += await conn.receive()
    return got


@contextlib.asynccontextmanager
async def writing_pair() -> AsyncIterator[tuple[PeerConnection, PeerConnection]]:
    """A connected (sender, receiver) over loopback TCP, the sender's writer running
    and parked; the writer stops when the block ends."""
    sender, receiver = conn_pair(*await tcp_pair())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run_writer)
        await trio.testing.wait_all_tasks_blocked()
        yield sender, receiver
        nursery.cancel_scope.cancel()


async def test_an_idle_writer_lets_the_caller_send_at_once_as_one_frame():
    with trio.fail_after(10):
        async with writing_pair() as (sender, receiver):
            messages = [p.FreeKeys(["a"]), p.FreeKeys(["b"]), p.Heartbeat()]
            sender.send_many(messages)
            # written by this task, now: nothing is queued for the writer
            assert sender.direct_frames == 1 and sender.frames_sent == 1
            assert sender.messages_sent == 3 and not sender._outbox
            assert await receive_all(receiver, 3) == messages


async def test_with_another_task_runnable_the_writer_sends_in_order():
    with trio.fail_after(10):
        sender, receiver = conn_pair(*await tcp_pair())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.run_writer)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(trio.sleep, 0)  # (runnable now: it could add to the frame)
            sender.send_many([p.FreeKeys(["a"])])
            assert sender.direct_frames == 0 and sender._outbox
            # and while the writer holds a frame, later batches queue behind it
            sender.send_many([p.FreeKeys(["b"])])
            assert sender.direct_frames == 0
            assert await receive_all(receiver, 2) == [p.FreeKeys(["a"]), p.FreeKeys(["b"])]
            assert sender.frames_sent == 1  # (both in the writer's frame)
            nursery.cancel_scope.cancel()


async def test_a_frame_the_kernel_takes_in_part_is_finished_before_the_next():
    with trio.fail_after(20):
        c, s = await tcp_pair()
        for stream in (c, s):
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sender, receiver = conn_pair(s, c, buffer=4096)
        big = p.FreeKeys([f"key-{i}" for i in range(20000)])  # far over the buffers
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.run_writer)
            await trio.testing.wait_all_tasks_blocked()
            sender.send_many([big])
            assert sender.direct_frames == 1
            assert sender.ws.unsent  # the kernel took only part of it
            sender.send(p.Heartbeat())  # queued behind the unsent tail
            assert await receive_all(receiver, 2) == [big, p.Heartbeat()]
            assert not sender.ws.unsent
            nursery.cancel_scope.cancel()


async def test_frames_read_together_come_back_from_one_receive():
    with trio.fail_after(10):
        client, server = await tcp_pair()
        _sender, receiver = conn_pair(client, server)
        # three frames in one write: one read takes them all
        data = b"".join(wsframe.encode_frame(wsframe.OP_BINARY,
                                             p.encode_frame([p.FreeKeys([str(i)])]),
                                             masked=True) for i in range(3))
        await client.send_all(data)
        got = await receiver.receive()
        assert got == [p.FreeKeys(["0"]), p.FreeKeys(["1"]), p.FreeKeys(["2"])]


async def test_a_ping_between_frames_ends_the_batch_and_is_still_answered():
    with trio.fail_after(10):
        client, server = await tcp_pair()
        _sender, receiver = conn_pair(client, server)
        data = b"".join([
            wsframe.encode_frame(wsframe.OP_BINARY, p.encode_frame([p.FreeKeys(["0"])]),
                                 masked=True),
            wsframe.encode_frame(wsframe.OP_PING, b"ping", masked=True),
            wsframe.encode_frame(wsframe.OP_BINARY, p.encode_frame([p.FreeKeys(["1"])]),
                                 masked=True),
        ])
        await client.send_all(data)
        assert await receiver.receive() == [p.FreeKeys(["0"])]
        assert await receiver.receive() == [p.FreeKeys(["1"])]  # (after the pong)
        pong = await client.receive_some(1024)
        assert pong[0] & 0x0F == wsframe.OP_PONG and pong.endswith(b"ping")


async def test_a_linger_that_waits_for_nothing_does_not_hold_the_batch():
    with trio.fail_after(10):
        sender, receiver = conn_pair(*await tcp_pair())
        more = [False]
        sender.linger = lambda: more[0]  # (a worker's: is another result microseconds away?)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.run_writer)
            await trio.testing.wait_all_tasks_blocked()
            sender.send_many([p.FreeKeys(["a"])])  # a worker's one result: at once
            assert sender.direct_frames == 1 and not sender._outbox
            more[0] = True
            sender.send_many([p.FreeKeys(["b"])])  # more are coming: the writer holds it
            assert sender.direct_frames == 1 and sender._outbox
            more[0] = False
            assert await receive_all(receiver, 2) == [p.FreeKeys(["a"]), p.FreeKeys(["b"])]
            nursery.cancel_scope.cancel()
