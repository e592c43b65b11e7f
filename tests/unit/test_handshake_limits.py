"""The per-connection limits of the scheduler's WebSocket server: small until the peer
has authenticated, the documented ones after ``open_limits``; and peer addresses that
never raise."""

import trio
import trio_websocket

from trioflow.config import MAX_HELLO_SIZE
from trioflow.net.handshake_limits import (
    PREAUTH_RECEIVE_BUFFER,
    open_limits,
    peer_address,
    serve_guarded_websocket,
)


async def test_connections_start_small_and_open_limits_raises_them():
    seen = []

    async def handler(request):
        ws = await request.accept()
        seen.append((ws.max_message_size, ws.receive_buffer_size))
        open_limits(ws, 10 << 20, 256 << 10)
        seen.append((ws.max_message_size, ws.receive_buffer_size))
        await ws.send_message(b"")
        await ws.get_message()

    async def start(nursery, task_status):
        await serve_guarded_websocket(handler, "127.0.0.1", 0, None, handler_nursery=nursery,
                                      max_message_size=512 << 20, task_status=task_status)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(start, nursery)
            url = f"ws://127.0.0.1:{server.port}/"
            async with trio_websocket.open_websocket_url(url) as ws:
                await ws.get_message()
                await ws.send_message(b"x" * (2 * MAX_HELLO_SIZE))  # fits the new limit
            nursery.cancel_scope.cancel()
    assert seen == [(MAX_HELLO_SIZE, PREAUTH_RECEIVE_BUFFER), (10 << 20, 256 << 10)]


def test_peer_address_never_raises():
    class Broken:
        @property
        def socket(self):
            raise OSError(107, "Transport endpoint is not connected")

    assert peer_address(Broken()) == "?"
    assert peer_address(object()) == "?"
