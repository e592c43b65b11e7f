"""net/websocket.py reads and writes a plain TCP stream's socket directly (issue 12: a
loop turn and the stream wrappers per frame on the control path). Over real loopback
sockets: what the kernel does not take at once still arrives whole, cancellation keeps
its meaning, a read that finds data is still a checkpoint, a reset peer ends the
connection, and any other stream takes the stream's own methods."""

from __future__ import annotations

import socket
import struct

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from trioflow.net import websocket as tws

LIMIT = 1 << 24


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        accepted: list[trio.SocketStream] = []

        async def accept() -> None:
            accepted.append(await listeners[0].accept())

        nursery.start_soon(accept)
        client = await trio.open_tcp_stream("127.0.0.1", port)
    await listeners[0].aclose()
    return client, accepted[0]


def ws_pair(client: trio.abc.Stream, server: trio.abc.Stream,
            buffer: int = 65536) -> tuple[tws.WebSocket, tws.WebSocket]:
    return (tws.WebSocket(client, client=True, max_message_size=LIMIT, receive_buffer_size=buffer),
            tws.WebSocket(server, client=False, max_message_size=LIMIT, receive_buffer_size=buffer))


async def test_the_direct_path_is_taken_on_tcp_only_and_both_carry_messages():
    with trio.fail_after(10):
        a, b = ws_pair(*await tcp_pair())
        assert a._raw is not None and b._raw is not None
        await a.send_message(b"over tcp")
        assert await b.get_message() == b"over tcp"
        await b.send_message("text back")
        assert await a.get_message() == "text back"

        m, n = ws_pair(*trio.testing.memory_stream_pair())
        assert m._raw is None and n._raw is None
        await m.send_message(b"in memory")
        assert await n.get_message() == b"in memory"


@pytest.mark.parametrize("client_sends", [True, False])
async def test_what_the_kernel_does_not_take_at_once_still_arrives_whole(client_sends):
    """A tiny send buffer: ``send`` takes part of the frame, ``send_all`` the rest."""
    with trio.fail_after(20):
        c, s = await tcp_pair()
        for stream in (c, s):
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        a, b = ws_pair(c, s, buffer=4096)
        sender, receiver = (a, b) if client_sends else (b, a)
        # under _SEPARATE_PAYLOAD a server frame is one buffer too: the direct path
        payloads = [bytes(range(256)) * 250, b"after it", bytes(7) * 9000]
        got: list[bytes | str] = []
        async with trio.open_nursery() as nursery:
            async def read() -> None:
                for _ in payloads:
                    got.append(await receiver.get_message())
            nursery.start_soon(read)
            for payload in payloads:
                await sender.send_message(payload)
        assert got == payloads


async def test_a_cancelled_send_sends_nothing():
    with trio.fail_after(10):
        a, b = ws_pair(*await tcp_pair())
        with trio.CancelScope() as scope:
            scope.cancel()
            await a.send_message(b"never sent")
        assert scope.cancelled_caught
        await a.send_message(b"sent")
        assert await b.get_message() == b"sent"


async def test_a_cancelled_receive_loses_nothing():
    with trio.fail_after(10):
        a, b = ws_pair(*await tcp_pair())
        scope = trio.CancelScope()

        async def read() -> None:
            with scope:
                await b.get_message()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()  # waiting on the socket
            scope.cancel()
        assert scope.cancelled_caught
        await a.send_message(b"first")
        assert await b.get_message() == b"first"


async def test_a_read_that_finds_data_waiting_is_still_a_checkpoint():
    """So a peer that keeps the socket full cannot keep the reader from yielding."""
    with trio.fail_after(10):
        a, b = ws_pair(*await tcp_pair())
        await a.send_message(b"waiting")
        assert b._raw is not None
        await trio.lowlevel.wait_readable(b._raw)  # the bytes are in the socket now
        with trio.testing.assert_checkpoints():
            assert await b.get_message() == b"waiting"


async def test_a_reset_peer_ends_the_connection_with_1006():
    with trio.fail_after(10):
        c, s = await tcp_pair()
        _a, b = ws_pair(c, s)
        # SO_LINGER 0: close sends a reset, not a FIN
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await c.aclose()
        with pytest.raises(ConnectionClosed) as info:
            await b.get_message()
        assert info.value.reason.code == 1006
        with pytest.raises(ConnectionClosed):
            await b.send_message(b"to nobody")


async def test_closing_the_stream_ends_a_receive_waiting_on_the_socket():
    with trio.fail_after(10):
        _a, b = ws_pair(*await tcp_pair())
        async with trio.open_nursery() as nursery:
            ended: list[int] = []

            async def read() -> None:
                with pytest.raises(ConnectionClosed) as info:
                    await b.get_message()
                ended.append(info.value.reason.code)
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            await b.abort()
        assert ended == [1006]
