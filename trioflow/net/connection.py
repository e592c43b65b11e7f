"""One peer connection over WebSocket: a batching writer and a decoding reader.

``send()`` never blocks: it appends to an outbox and wakes the writer task, which sends
everything queued since its last send as **one** frame. Under load frames grow, so the
per-message cost of WebSocket framing, syscalls and wake-ups falls; when idle a message
goes out at once. There are no timers. ``send_many()`` hands over a batch: with the
writer idle and nothing else runnable, the caller writes it as one frame itself.
``send_from_thread()`` does the same from another thread (a blocking client's caller, a
task thread), so that a message posted there costs the loop no wake-up.

Cancellation: cancelling ``run_writer`` drops whatever is still queued. ``aclose``
flushes first, then closes the WebSocket with a close code.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import trio
from trio_websocket import ConnectionClosed

from ..config import CONNECT_TIMEOUT, HEARTBEAT_INTERVAL, MAX_MESSAGE_SIZE, SEND_TIMEOUT
from ..core.fold import append_folded
from ..errors import AuthenticationError, ClientClosedError, LocalProtocolError
from ..protocol import PROTOCOL_VERSION, Heartbeat, decode_frame, encode_frame
from .addresses import connect_failure, scheduler_address
from .websocket import WebSocket
from .ws_upgrade import UpgradeRefused, client_upgrade

logger = logging.getLogger(__name__)

#: Bytes read from the socket at a time (a syscall per 4 KiB of a large frame would
#: cost more than the frame's parsing).
RECEIVE_BUFFER_SIZE = 256 * 1024
#: Longest a writer holds a frame back for messages that are about to come (seconds),
#: and how many messages are worth waiting for. Frames, not messages, are what cost:
#: each one is a wake-up, a syscall and a WebSocket parse on both ends.
LINGER_MAX = 0.0005
LINGER_MESSAGES = 256
#: Part of LINGER_MAX after which the next message queued ends the linger (by its
#: timestamp, on the send path). A busy worker queues messages every few tens of
#: microseconds, so most of its lingers end this way, before the LINGER_MAX deadline,
#: which then never delivers a Trio cancellation. The deadline still ends a linger
#: nothing more is queued in, so no linger lasts longer than LINGER_MAX.
LINGER_SOFT = 0.75
#: Most messages in one frame. Past a few hundred the per-frame cost is noise, while a
#: bounded frame lets the receiver act on the first messages (a scheduler assigns the
#: first tasks of a large submission) while the rest are still being encoded and sent.
MAX_BATCH_MESSAGES = 2048
#: WebSocket close code for a peer too slow to read what we send.
CLOSE_TOO_SLOW = 4008
#: (the connection's timeouts and size limit are in ``trioflow.config``)


class PeerConnection:
    """A WebSocket plus an outbox. Owned by one Trio task pair (reader, writer)."""

    def __init__(self, ws: WebSocket, *, name: str = "peer",
                 version: int = PROTOCOL_VERSION,
                 max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.ws = ws
        self.name = name
        self.version = version
        self.max_message_size = max_message_size
        self._outbox: list[Any] = []
        self._unread: list[Any] = []
        self._wakeup = trio.Event()
        self.closed = False
        #: frames and messages the writer and ``send_many`` sent (on the loop), frames
        #: ``send_many`` wrote itself, and frames ``send_from_thread`` wrote (all of
        #: them counted in the ``frames_sent``, ``messages_sent`` and ``direct_frames``
        #: totals; one counter per writing side, so that no increment is lost)
        self._loop_frames = 0
        self._loop_messages = 0
        self._loop_direct = 0
        self.thread_frames = 0
        self._thread_messages = 0
        #: for ``send_from_thread``: the loop's clock (readable from any thread) and
        #: its token (to wake the writer from there)
        self._clock = trio.lowlevel.current_clock()
        self._token = trio.lowlevel.current_trio_token()
        #: the writer waits for messages with nothing queued or being sent
        self._parked = False
        #: lingers so far, and how many of them the LINGER_MAX deadline ended
        self.lingers = 0
        self.lingers_timed_out = 0
        #: optional hook: True while more messages are about to be queued (a worker
        #: with short tasks running); the writer then waits for them, briefly
        self.linger: Callable[[], bool] | None = None
        self._lingering = False  # the writer is in _linger: send wakes it less often
        #: while lingering: the first message queued from this time on ends the linger
        self._linger_until = 0.0
        #: optional hook: ``fold(last_queued, message)`` returns one message standing for
        #: both, or None; ``send`` then replaces the last unsent message with it (a worker
        #: folds its slot reports, ``core.fold``)
        self.fold: Callable[[Any, Any], Any | None] | None = None
        self.heartbeat_interval = HEARTBEAT_INTERVAL
        self.send_timeout = SEND_TIMEOUT
        #: drop the connection once nothing (not even a heartbeat) arrived for this
        #: many seconds (None: never; the scheduler has its own watchdog)
        self.silence_timeout: float | None = None
        self.last_received = trio.current_time()
        self.last_sent = trio.current_time()
        #: when the frame being sent now started going out (None: not sending); the
        #: heartbeat task cancels ``_send_scope`` once it is ``send_timeout`` old
        self._sending_since: float | None = None
        self._send_scope: trio.CancelScope | None = None
        #: when the attempt that opened this connection must have been welcomed
        self.handshake_deadline: float | None = None

    def __repr__(self) -> str:
        return f"<PeerConnection {self.name} queued={len(self._outbox)} closed={self.closed}>"

    @property
    def frames_sent(self) -> int:
        return self._loop_frames + self.thread_frames

    @property
    def messages_sent(self) -> int:
        return self._loop_messages + self._thread_messages

    @property
    def direct_frames(self) -> int:
        """Frames written by the task or thread that produced them, with no writer turn."""
        return self._loop_direct + self.thread_frames

    def send(self, message: Any) -> None:
        """Queue ``message``; the writer sends it with whatever else is queued."""
        if self.closed:
            return
        outbox = self._outbox
        if self.fold is not None:
            append_folded(outbox, message, self.fold)
        else:
            outbox.append(message)
        if (self._lingering and len(outbox) < LINGER_MESSAGES
                and self.linger() and trio.current_time() < self._linger_until):  # type: ignore[misc]
            # the writer holds this frame anyway: waking it per message costs a task
            # switch each, and it would only go back to sleep
            return
        self._wakeup.set()

    def send_many(self, messages: list[Any]) -> None:
        """Queue ``messages`` (in order) and get them going, from a task that produced
        them all at once (the scheduler, for each peer an event had messages for; a
        client session's flush).

        When the writer is parked with nothing queued and no other task is waiting to
        run on this loop, nothing could join them in the writer's scheduling round, so
        they leave at once as one frame written from this task: no writer wake-up, and
        no loop turn before the send. Otherwise (a runnable task, a frame queued or
        being sent, a ``linger`` hook waiting for more, a kernel that takes nothing now)
        they go the way of ``send``. A ``linger`` hook that says nothing more is coming does
        not hold them (a worker's one result), and ``fold`` folds them among themselves.
        Never blocks; cancellation does not apply (no await).
        """
        if (self._parked and not self._outbox and not self.closed
                and len(messages) <= MAX_BATCH_MESSAGES
                and (self.linger is None or not self.linger())
                and trio.lowlevel.current_statistics().tasks_runnable == 0):
            if self.fold is not None and len(messages) > 1:
                messages = self._folded(messages)
            frame = encode_frame(messages, self.version)
            if len(frame) <= self.max_message_size and self.ws.send_message_nowait(frame):
                self._loop_frames += 1
                self._loop_messages += len(messages)
                self._loop_direct += 1
                self.last_sent = trio.current_time()
                if self.ws.unsent:  # the writer writes the rest
                    self._wakeup.set()
                return
        for message in messages:
            self.send(message)

    def send_from_thread(self, messages: list[Any]) -> bool:
        """Write ``messages`` as one frame now, from a thread other than the loop's,
        if nothing sent before them is still held here (the writer is parked with
        nothing queued) and ``linger`` does not want to wait for more; True if they
        went, False if nothing was written (the caller hands them to the loop then).

        This spares the loop a wake-up and a turn per message posted from a thread (a
        blocking client's submit, a task thread's result). The caller orders it with
        everything else it sends (``Session`` calls it under its lock, with nothing of
        its own queued); the WebSocket keeps the frame apart from the loop's. A tail
        the kernel does not take now is written by the writer, woken for it.
        """
        if (not self._parked or self._outbox or self.closed
                or len(messages) > MAX_BATCH_MESSAGES
                or (self.linger is not None and self.linger())):
            return False
        if self.fold is not None and len(messages) > 1:
            messages = self._folded(messages)
        frame = encode_frame(messages, self.version)
        if len(frame) > self.max_message_size or not self.ws.send_message_nowait(frame):
            return False
        self.thread_frames += 1
        self._thread_messages += len(messages)
        self.last_sent = self._clock.current_time()
        if self.ws.unsent:  # (the writer writes the rest)
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._wake_writer)
        return True

    def _wake_writer(self) -> None:
        self._wakeup.set()

    def _folded(self, messages: list[Any]) -> list[Any]:
        """``messages`` with each one ``fold`` merges into the one before it merged
        (what ``send`` does to a message queued behind another)."""
        fold = self.fold
        assert fold is not None
        out: list[Any] = []
        for message in messages:
            append_folded(out, message, fold)
        return out

    async def receive(self) -> list[Any]:
        """The next frame's messages, and those of the frames read with it (one batch:
        the receiver handles them as one event, as if they had come in one frame).

        Raises:
            RemoteProtocolError: the frame was not valid.
            trio_websocket.ConnectionClosed: the peer went away.
        """
        if self._unread:
            messages, self._unread = self._unread, []
            return messages
        ws = self.ws
        data = await ws.get_message()
        self.last_received = trio.current_time()
        messages = decode_frame(data, self.version)
        more = ws.get_message_nowait()
        while more is not None:
            messages += decode_frame(more, self.version)
            more = ws.get_message_nowait()
        return messages

    def unread(self, messages: list[Any]) -> None:
        """Give messages back: the next ``receive()`` returns them first (the handshake
        reads a frame that may carry more than the Welcome)."""
        self._unread = list(messages) + self._unread

    def _encode(self, messages: list[Any]) -> list[bytes]:
        frame = encode_frame(messages, self.version)
        if len(frame) <= self.max_message_size:
            return [frame]
        if len(messages) == 1:
            raise LocalProtocolError(
                f"one {type(messages[0]).__name__} message is {len(frame)} bytes, over the "
                f"{self.max_message_size}-byte frame limit"
            )
        half = len(messages) // 2
        return self._encode(messages[:half]) + self._encode(messages[half:])

    async def _linger(self) -> None:
        """Hold the frame while ``linger()`` says more is coming, up to LINGER_MAX.

        Meanwhile ``send`` wakes the writer only once ``linger()`` turns false,
        LINGER_MESSAGES are queued, or the linger is LINGER_SOFT of LINGER_MAX old, and
        one cancel scope covers the whole wait: a wake-up and a scope per message queued
        cost more than the frame they save. The scope's deadline (LINGER_MAX) ends only
        a linger that nothing was queued in since LINGER_SOFT: ending by timestamp in
        ``send`` spares the Trio cancellation a fired deadline is.
        """
        if not (self.linger() and len(self._outbox) < LINGER_MESSAGES):  # type: ignore[misc]
            return
        now = trio.current_time()
        self._linger_until = now + LINGER_SOFT * LINGER_MAX
        self._lingering = True
        try:
            with trio.CancelScope(deadline=now + LINGER_MAX) as scope:
                while (self.linger() and len(self._outbox) < LINGER_MESSAGES  # type: ignore[misc]
                       and trio.current_time() < self._linger_until):
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
            self.lingers += 1
            self.lingers_timed_out += scope.cancelled_caught
        finally:
            self._lingering = False

    def _take_batch(self) -> list[Any]:
        """The next frame's messages: everything queued, up to MAX_BATCH_MESSAGES (the
        rest leave in the next frame, at once)."""
        outbox = self._outbox
        if len(outbox) <= MAX_BATCH_MESSAGES:
            self._outbox = []
            return outbox
        self._outbox = outbox[MAX_BATCH_MESSAGES:]
        self._wakeup.set()
        return outbox[:MAX_BATCH_MESSAGES]

    async def run_writer(self) -> None:
        """Send queued messages until the connection closes. Run it in a nursery.

        A peer that does not read cannot stall us: a frame not taken within
        ``send_timeout`` closes the connection with CLOSE_TOO_SLOW. The heartbeat task
        (``run_heartbeats``, which must run too) enforces it, so a frame costs no cancel
        scope of its own.
        """
        try:
            with trio.CancelScope() as self._send_scope:
                while True:
                    if not self._outbox:
                        self._parked = True
                        try:
                            await self._wakeup.wait()
                        finally:
                            self._parked = False
                    if self.ws.unsent:  # the tail of a frame send_many wrote in part
                        self._sending_since = trio.current_time()
                        await self.ws.drain()
                        self._sending_since = None
                    # one scheduling round before sending: whatever else is runnable
                    # now (other readers, task completions) adds to this frame instead
                    # of the next
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    if self.linger is not None:
                        await self._linger()
                    self._wakeup = trio.Event()
                    batch = self._take_batch()
                    if not batch:
                        continue
                    self._sending_since = trio.current_time()
                    for frame in self._encode(batch):
                        await self.ws.send_message(frame)
                    self._sending_since = None
                    self._loop_frames += 1
                    self._loop_messages += len(batch)
                    self.last_sent = trio.current_time()
            # only the heartbeat task cancels this scope: the peer took too long
            logger.warning("%s: not reading for %ss; dropping it", self.name, self.send_timeout)
            self.closed = True
            await self.ws.aclose(CLOSE_TOO_SLOW, "too slow")
        except ConnectionClosed:
            self.closed = True
        except LocalProtocolError:
            logger.exception("%s: cannot send a message", self.name)
            raise

    async def run_heartbeats(self) -> None:
        """Send a Heartbeat whenever nothing was sent for ``heartbeat_interval`` seconds,
        so the other side can tell a silent peer (cut link, frozen host) from an idle
        one; drop a peer silent for ``silence_timeout``. A task of its own: a timeout
        around every send or receive costs a cancel scope per frame on the hot path."""
        while not self.closed:
            now = trio.current_time()
            limit = self.silence_timeout
            if limit is not None and now - self.last_received >= limit:
                logger.warning("%s: silent for %.1fs; disconnecting", self.name,
                               now - self.last_received)
                self.closed = True
                await self.ws.abort()  # the pending receive raises ConnectionClosed
                return
            since = self._sending_since
            if since is not None and now - since >= self.send_timeout:
                assert self._send_scope is not None
                self._send_scope.cancel()
                return
            quiet = now - self.last_sent
            if quiet >= self.heartbeat_interval:
                self.send(Heartbeat())
                quiet = 0.0
            wake = self.heartbeat_interval - quiet
            if since is not None:
                wake = min(wake, since + self.send_timeout - now)
            if limit is not None:
                wake = min(wake, self.last_received + limit - now)
            await trio.sleep(wake)

    async def flush(self) -> None:
        """Send whatever is queued now (used before closing)."""
        while self._outbox and not self.closed:
            batch = self._take_batch()
            try:
                for frame in self._encode(batch):
                    await self.ws.send_message(frame)
            except ConnectionClosed:
                self.closed = True

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Flush, then close with ``code``. Never raises for an already-closed socket."""
        if not self.closed:
            with trio.move_on_after(2):
                await self.flush()
        self.closed = True
        with trio.move_on_after(2):
            try:
                await self.ws.aclose(code, reason[:120])
            except Exception:  # the socket may already be broken; closing is best effort
                logger.debug("%s: error while closing", self.name, exc_info=True)


@contextlib.asynccontextmanager
async def open_connection(address: str, *, name: str, ssl_context: ssl.SSLContext | None = None,
                          max_message_size: int = MAX_MESSAGE_SIZE,
                          connect_timeout: float = CONNECT_TIMEOUT,
                          ) -> AsyncIterator[PeerConnection]:
    """Open a WebSocket to ``address`` (ws:// or wss://) as a PeerConnection.

    The whole attempt, up to the Welcome (see ``welcome_deadline``), has
    ``connect_timeout`` seconds: a server that resets or never answers cannot hold it.

    Raises:
        AddressError: ``address`` is not a scheduler address (see ``addresses``).
        AuthenticationError: the server's TLS certificate is not trusted (retrying
            cannot help; trio-websocket alone would only time out).
        ClientClosedError: nothing answers at ``address`` in time.
    """
    address = scheduler_address(address)
    deadline = trio.current_time() + connect_timeout
    ctx = None
    if address.startswith("wss://"):
        ctx = ssl_context or ssl.create_default_context()
        await _check_tls(address, ctx, deadline)
    async with _client_websocket(address, ctx, max_message_size, deadline) as ws:
        conn = PeerConnection(ws, name=name, max_message_size=max_message_size)
        conn.handshake_deadline = deadline
        yield conn


@contextlib.asynccontextmanager
async def _client_websocket(address: str, ctx: ssl.SSLContext | None, max_message_size: int,
                            deadline: float) -> AsyncIterator[WebSocket]:
    """A WebSocket to ``address``, upgraded by ``deadline``; closed on exit (a close
    handshake bounded by ``websocket.DISCONNECT_TIMEOUT``).

    Raises:
        ClientClosedError: no WebSocket by ``deadline``, or the server refused, reset or
            closed before answering the upgrade (at once, not at the deadline).

    Cancellation: the connection is closed without a close handshake.
    """
    url = urllib.parse.urlsplit(address)
    host, port = url.hostname or "", url.port or (443 if ctx else 80)
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    stream: trio.abc.Stream | None = None
    try:
        with trio.fail_at(deadline):
            stream = await trio.open_tcp_stream(host, port)
            if ctx is not None:
                stream = trio.SSLStream(stream, ctx, server_hostname=host,
                                        https_compatible=True)
            shown = f"[{host}]" if ":" in host else host  # an IPv6 literal, RFC 3986
            ws = await client_upgrade(
                stream, host=shown if port in (80, 443) else f"{shown}:{port}", target=target,
                max_message_size=max_message_size, receive_buffer_size=RECEIVE_BUFFER_SIZE)
    except (OSError, UpgradeRefused, ConnectionClosed, trio.BrokenResourceError,
            trio.TooSlowError) as exc:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise ClientClosedError(connect_failure(address, exc)) from exc
    except BaseException:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise
    try:
        yield ws
    finally:
        await ws.aclose()  # bounded; cancelled, it still closes the stream


@contextlib.contextmanager
def welcome_deadline(conn: Any) -> Iterator[None]:
    """Bound the wait for the Welcome by what is left of the connection attempt.

    Raises:
        ClientClosedError: no Welcome in time (the server is hung or stopped).
    """
    deadline = getattr(conn, "handshake_deadline", None)
    if deadline is None:  # a local connection: the scheduler answers at once
        deadline = trio.current_time() + CONNECT_TIMEOUT
    try:
        with trio.fail_at(deadline):
            yield
    except trio.TooSlowError:
        raise ClientClosedError(f"{conn.name} did not welcome us within the connect "
                                "timeout") from None


async def _check_tls(address: str, ctx: ssl.SSLContext, deadline: float) -> None:
    url = urllib.parse.urlsplit(address)
    host, port = url.hostname or "", url.port or 443
    try:
        with trio.fail_at(deadline):
            stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ctx)
            await stream.do_handshake()
            await stream.aclose()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise AuthenticationError(
                f"the TLS certificate of {address} is not trusted ({cause.verify_message}): "
                "pass the CA that signed it (--tls-ca, or ssl_context=)"
            ) from exc
        raise ClientClosedError(connect_failure(address, exc)) from exc
    except (OSError, trio.TooSlowError) as exc:
        raise ClientClosedError(connect_failure(address, exc)) from exc
