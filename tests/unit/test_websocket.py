"""trioflow's WebSocket (net/websocket.py) against trio-websocket, an independent
implementation, over real loopback sockets: both roles, pings, close codes, refusals,
limits, and frames that arrive in the same read as the upgrade."""

import trio
import trio.testing
import trio_websocket
from trio_websocket import ConnectionClosed
from wsproto.handshake import H11Handshake

from trioflow.net import websocket as tws
from trioflow.net import ws_upgrade
from trioflow.net.handshake_limits import serve_guarded_websocket
from trioflow.protocol import wsframe
from trioflow.testing.hostile import UPGRADE_REQUEST, ws_frame

LIMIT = 1 << 20


async def open_ours(port: int, path: str = "/") -> tws.WebSocket:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    return await ws_upgrade.client_upgrade(stream, host=f"127.0.0.1:{port}", target=path,
                                    max_message_size=LIMIT, receive_buffer_size=65536)


async def serve_ours(nursery, handler):
    async def start(task_status):
        await serve_guarded_websocket(handler, "127.0.0.1", 0, None, handler_nursery=nursery,
                                      max_message_size=LIMIT, task_status=task_status)
    return await nursery.start(start)


async def test_trio_websocket_client_talks_to_our_server():
    closed = []

    async def handler(request):
        assert request.path == "/path?x=1"
        ws = await request.accept()
        ws.max_message_size = LIMIT
        try:
            while True:
                message = await ws.get_message()
                await ws.send_message(message * 2)
        except ConnectionClosed as exc:
            closed.append(exc.reason.code)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await serve_ours(nursery, handler)
            url = f"ws://127.0.0.1:{server.port}/path?x=1"
            async with trio_websocket.open_websocket_url(url) as ws:
                for payload in (b"", b"a", b"b" * 70_000):
                    await ws.send_message(payload)
                    assert await ws.get_message() == payload * 2
                await ws.send_message("text")
                assert await ws.get_message() == "texttext"
                await ws.ping(b"ping")  # returns once our pong arrived
            nursery.cancel_scope.cancel()
    assert closed == [1000]


async def test_our_client_talks_to_a_trio_websocket_server():
    async def handler(request):
        ws = await request.accept()
        await ws.send_message(b"first")  # often in the same read as the 101 answer
        message = await ws.get_message()
        await ws.ping(b"are you there")  # answered by our get_message
        await ws.send_message(message + b"!")
        await ws.aclose(4003, "go away")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(trio_websocket.serve_websocket, handler,
                                         "127.0.0.1", 0, None)
            ws = await open_ours(server.port)
            assert await ws.get_message() == b"first"
            await ws.send_message(b"x" * 100_000)
            assert await ws.get_message() == b"x" * 100_000 + b"!"
            try:
                await ws.get_message()
            except ConnectionClosed as exc:
                assert (exc.reason.code, exc.reason.reason) == (4003, "go away")
            else:
                raise AssertionError("the server's close did not end the connection")
            await ws.aclose()
            nursery.cancel_scope.cancel()


async def test_a_refused_upgrade_says_its_status():
    async def handler(request):
        await request.reject(403, body=b"no\n")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await serve_ours(nursery, handler)
            try:
                await open_ours(server.port)
            except ws_upgrade.UpgradeRefused as exc:
                assert exc.status_code == 403
            else:
                raise AssertionError("upgrade not refused")
            nursery.cancel_scope.cancel()


async def test_we_close_with_our_code_and_the_peer_sees_it():
    async def handler(request):
        ws = await request.accept()
        await ws.get_message()
        await ws.aclose(4000, "bad frame")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await serve_ours(nursery, handler)
            async with trio_websocket.open_websocket_url(
                    f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send_message(b"hi")
                try:
                    await ws.get_message()
                except ConnectionClosed as exc:
                    assert exc.reason.code == 4000
                else:
                    raise AssertionError("not closed")
            nursery.cancel_scope.cancel()


async def test_an_oversized_message_closes_with_1009():
    async def handler(request):
        ws = await request.accept()  # the pre-authentication limit: MAX_HELLO_SIZE
        try:
            await ws.get_message()
        except ConnectionClosed as exc:
            reasons.append(exc.reason.code)

    reasons = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await serve_ours(nursery, handler)
            async with trio_websocket.open_websocket_url(
                    f"ws://127.0.0.1:{server.port}/") as ws:
                try:  # refused on the header: the close may arrive while still sending
                    await ws.send_message(b"x" * (200 * 1024))
                    await ws.get_message()
                except ConnectionClosed as exc:
                    assert exc.reason.code == wsframe.CLOSE_TOO_BIG
                else:
                    raise AssertionError("not refused")
            nursery.cancel_scope.cancel()
    assert reasons == [wsframe.CLOSE_TOO_BIG]


async def test_a_frame_in_the_same_read_as_the_upgrade_request_is_not_lost():
    got = []

    async def handler(request):
        ws = await request.accept()
        got.append(await ws.get_message())
        await ws.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await serve_ours(nursery, handler)
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(UPGRADE_REQUEST + ws_frame(b"early"))
            data = b""
            while b"\x88" not in data.partition(b"\r\n\r\n")[2]:
                data += await stream.receive_some(4096)  # the 101, then the close frame
            await stream.aclose()  # ends the server's wait for our close frame
            nursery.cancel_scope.cancel()
    assert got == [b"early"]


def test_wsproto_exposes_the_bytes_read_past_the_upgrade_where_we_read_them():
    """``ws_upgrade._trailing`` reads h11's public ``trailing_data`` through wsproto's
    ``_h11_connection``: if an upgrade renames it, this fails instead of frames that
    came with the upgrade being dropped."""
    handshake = H11Handshake(ws_upgrade.ConnectionType.SERVER)
    handshake.receive_data(UPGRADE_REQUEST + b"\x82\x00")
    assert [type(e).__name__ for e in handshake.events()] == ["Request"]
    handshake.send(ws_upgrade.AcceptConnection())
    assert ws_upgrade._trailing(handshake) == b"\x82\x00"


async def test_abort_ends_a_pending_receive_at_once():
    async def handler(request):
        ws = await request.accept()
        await ws.get_message()  # never answers: the client aborts

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await serve_ours(nursery, handler)
            ws = await open_ours(server.port)
            codes = []

            async def receive():
                try:
                    await ws.get_message()
                except ConnectionClosed as exc:
                    codes.append(exc.reason.code)

            async with trio.open_nursery() as inner:
                inner.start_soon(receive)
                await trio.testing.wait_all_tasks_blocked()
                await ws.abort()
            nursery.cancel_scope.cancel()
    assert codes == [wsframe.CLOSE_ABNORMAL]
