"""Worker-to-worker data: each worker serves the results it holds to its peers.

A task's inputs that live on another worker are fetched from that worker directly
(never through the scheduler). The data server speaks the same envelope: a ``Hello``
(with the cluster token, when one is set), then ``GetData`` requests answered with
``DataReply``. It only ever *sends* pickled bytes; it unpickles nothing it receives.
"""

from __future__ import annotations

import hmac
import logging
import ssl
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from .. import protocol as p
from ..errors import RemoteProtocolError
from .connection import RECEIVE_BUFFER_SIZE, PeerConnection, open_connection

logger = logging.getLogger(__name__)


async def serve_peer_data(worker: Any, host: str, *, token: str | None,
                          ssl_context: ssl.SSLContext | None, max_message_size: int,
                          task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``worker``'s results on ``host`` (any free port); started(address)."""

    async def handler(request: WebSocketRequest) -> None:
        try:
            if any(name.lower() == b"origin" for name, _ in request.headers):
                await request.reject(403)
                return
            ws = await request.accept()
            conn = PeerConnection(ws, name=f"peer {request.remote}",
                                  max_message_size=max_message_size)
            with trio.fail_after(10):
                hello, *pending = await conn.receive()
            if not isinstance(hello, p.Hello) or (
                token is not None and not hmac.compare_digest(hello.token.encode(), token.encode())
            ):
                await conn.aclose(p.CLOSE_AUTH_FAILED, "wrong or missing token")
                return
            while True:
                # requests may share the hello's frame
                batch, pending = pending or await conn.receive(), []
                for msg in batch:
                    if not isinstance(msg, p.GetData):
                        raise RemoteProtocolError(f"unexpected {type(msg).__name__}")
                    keys, blobs, missing = await worker.blobs_for(msg.keys)
                    conn.send(p.DataReply(msg.request_id, keys, blobs, missing))
                await conn.flush()
        except (ConnectionClosed, trio.TooSlowError, trio.BrokenResourceError):
            pass
        except Exception as exc:  # one bad peer must not stop the server
            logger.warning("data server: dropping %s: %s", request.remote, exc)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                handler, host, 0, ssl_context, handler_nursery=nursery,
                max_message_size=max_message_size,
                receive_buffer_size=RECEIVE_BUFFER_SIZE, task_status=task_status)
        )
        scheme = "wss" if ssl_context else "ws"
        shown = host if ":" not in host else f"[{host}]"
        task_status.started(f"{scheme}://{shown}:{server.port}")


async def fetch_from_peer(address: str, keys: list[str], *, token: str | None,
                          ssl_context: ssl.SSLContext | None,
                          max_message_size: int) -> dict[str, bytes]:
    """Fetch pickled values of ``keys`` from the worker serving data at ``address``.

    Raises:
        WorkerLost-like errors (``KeyError``) when the peer no longer holds a key.
    """
    async with open_connection(address, name=f"peer {address}", ssl_context=ssl_context,
                               max_message_size=max_message_size) as conn:
        conn.send(p.Hello("client", "fetch", list(p.SUPPORTED_VERSIONS), token or ""))
        conn.send(p.GetData(1, list(keys)))
        await conn.flush()
        for msg in await conn.receive():
            if isinstance(msg, p.DataReply):
                if msg.missing:
                    raise KeyError(f"peer {address} no longer holds {msg.missing[:3]}")
                return dict(zip(msg.keys, msg.blobs))
    raise RemoteProtocolError(f"peer {address} closed without answering")
