"""A client's link to its scheduler: the connection, the handshake, the ``Session`` on
it, and the task that reads the scheduler's messages into that session.

The connection is a WebSocket to the scheduler's address, or the in-process link to a
scheduler that runs on the client's own loop (a local cluster started for it). Both
``AsyncClient`` and, through it, the blocking ``Client`` open theirs here.
"""

from __future__ import annotations

import contextlib
import logging
import ssl

import trio
from trio_websocket import ConnectionClosed

from .config import PEER_TIMEOUT
from .dashboard.server import link
from .engine.session import Session
from .net import handshake
from .net.bulk import BulkPool
from .net.connection import open_connection
from .net.local_link import AnyConnection
from .net.scheduler_server import SchedulerServer

logger = logging.getLogger(__name__)


async def open_session(stack: contextlib.AsyncExitStack, address: str, *, name: str,
                       token: str | None, ssl_context: ssl.SSLContext | None,
                       scheduler: SchedulerServer | None = None) -> Session:
    """Connect to the scheduler at ``address`` (in-process when ``scheduler`` is the one
    serving it on this loop), say hello, and return the welcomed ``Session``, running:
    its bulk pool, writer, heartbeats and reader live in ``stack``.

    Cancellation: closing ``stack`` (as any error here does) stops them and closes the
    connection; the session's futures fail with "the client closed".

    Raises:
        ClientClosedError: nothing answers at ``address`` in time.
        AuthenticationError: the scheduler refused ``token``.
    """
    conn: AnyConnection
    if scheduler is not None:
        conn = await stack.enter_async_context(scheduler.open_local_peer(name))
    else:
        conn = await stack.enter_async_context(open_connection(
            address, name=f"scheduler ({address})", ssl_context=ssl_context))
    conn.send(handshake.hello("client", name, token))
    await conn.flush()
    welcome = await handshake.expect_welcome(conn)
    session = Session(conn, welcome.peer_id, scheduler_id=welcome.scheduler_id)
    session.address = address
    session.dashboard_link = link(welcome.dashboard, token)
    session.scheduler_versions = welcome.versions
    pool = BulkPool(token=token, ssl_context=ssl_context)
    stack.push_async_callback(pool.aclose)
    nursery = await stack.enter_async_context(trio.open_nursery())
    session.start(nursery, pool, welcome.inline_limit)
    nursery.start_soon(conn.run_writer)
    nursery.start_soon(conn.run_heartbeats)
    nursery.start_soon(read_scheduler, conn, session)
    stack.callback(nursery.cancel_scope.cancel)
    stack.callback(session.close, "the client closed")
    return session


async def read_scheduler(conn: AnyConnection, session: Session) -> None:
    """Hand every message from the scheduler to ``session`` until the connection ends,
    or the scheduler has been silent for ``PEER_TIMEOUT``; then close the session with
    the reason (its pending futures fail with it).

    Cancellation: the session is closed too.
    """
    reason = "the scheduler closed the connection"
    try:
        # the scheduler heartbeats every second: PEER_TIMEOUT of silence means it is
        # gone. One deadline per PEER_TIMEOUT, not a cancel scope per frame (a scope
        # costs more than reading a small frame): when the scope's deadline passes,
        # the silence is measured from the last frame, and the scope is renewed if
        # the scheduler spoke since. A receive cancelled so loses nothing.
        heard = trio.current_time()
        while True:
            with trio.move_on_at(heard + PEER_TIMEOUT):
                while True:
                    messages = await conn.receive()
                    heard = trio.current_time()
                    for msg in messages:
                        session.handle(msg)
            if trio.current_time() >= heard + PEER_TIMEOUT:
                raise trio.TooSlowError
    except ConnectionClosed as exc:
        why = exc.reason
        reason = ("connection closed" if why is None else
                  f"connection closed ({why.code} {why.reason or ''})".strip())
    except trio.TooSlowError:
        reason = f"the scheduler has been silent for {PEER_TIMEOUT}s"
        logger.warning("client: %s; giving up on it", reason)
    except Exception as exc:
        reason = f"connection failed: {exc}"
        logger.warning("client connection failed: %s", exc)
    finally:
        session.close(reason)
