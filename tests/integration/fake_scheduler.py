"""A fake scheduler over a real WebSocket, for tests of what a client does when the
scheduler misbehaves: it welcomes one client, then does what a subclass's ``talk`` says."""

from __future__ import annotations

import trio
from trio_websocket import WebSocketConnection, serve_websocket

from trioflow import protocol as p


class FakeScheduler:
    """Welcomes the client that connects, then runs ``talk(ws)`` on its connection."""

    def __init__(self) -> None:
        self.address = ""

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, self._handle, "127.0.0.1", 0, None)
            self.address = f"ws://127.0.0.1:{server.port}"
            task_status.started()

    async def _handle(self, request) -> None:
        ws = await request.accept()
        await ws.get_message()  # the Hello
        await ws.send_message(p.encode_frame([p.Welcome(p.PROTOCOL_VERSION, "c1")],
                                             p.PROTOCOL_VERSION))
        await self.talk(ws)

    async def talk(self, ws: WebSocketConnection) -> None:
        """What the fake does once the client is welcomed (override)."""
        await trio.sleep_forever()
