"""The ordered stream of a session's messages to its scheduler connection.

``post`` may be called from any thread and never blocks. Messages go to a queue under
the session's lock and are flushed to the connection on the loop
(``TrioToken.run_sync_soon``): a ``submit`` from a thread costs a pickle and a lock, not
a round trip to the loop. When nothing is queued, a thread writes its messages to the
connection itself, under the same lock (``PeerConnection.send_from_thread``), and the
loop is not woken at all; once, until the loop has had a turn, so that a burst still
leaves in the loop's large frames.

The releases of futures that died (``ReleaseKeys``) are batched here too: a burst of
them is one message, sent on the loop's next turn, behind a thread's posts when they
died on a thread.

Calls queued with ``call_in_order`` run on the loop in the stream's order: slot changes
(secede, rejoin) reach the scheduler in the order the task made them relative to its
messages.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import trio

from .. import protocol as p
from ..errors import ClientClosedError
from .protocols import Connection


class Outbox:
    """The queue, its flush on the loop, and a thread's own writes, of one session.

    Args:
        conn: the connection (its ``send`` and ``send_many`` only on the loop; its
            ``send_from_thread``, if it has one, from other threads).
        lock: the session's lock: it orders every post, and the key table's changes.
        closed: why the session closed, or None (posts then raise, ``send_in_order``
            drops).
        take_releases: under ``lock``: the ``ReleaseKeys`` for the keys released since
            its last call, if any.
    """

    def __init__(self, conn: Connection, lock: threading.Lock, *,
                 closed: Callable[[], str | None],
                 take_releases: Callable[[], p.ReleaseKeys | None]) -> None:
        self.conn = conn
        self.lock = lock
        self._closed = closed
        self._take_releases = take_releases
        self.trio_token = trio.lowlevel.current_trio_token()
        self.loop_thread = threading.get_ident()
        #: the connection's write from another thread, if it has one (a WebSocket
        #: connection: ``PeerConnection.send_from_thread``; not an in-process link)
        self._send_from_thread: Callable[[list[Any]], bool] | None = getattr(
            conn, "send_from_thread", None)
        self._queue: list[Any] = []
        self._flush_scheduled = False
        self._flushing = False  # _flush is running (on the loop)
        #: _flush holds messages taken from the queue, not yet handed to the connection
        #: (set under the lock): a thread must not write past them (``_thread_send``)
        self._holding = False
        #: a thread wrote a post itself since the loop last flushed or handled a message:
        #: the next posts queue, so a burst (``map``, a loop of submits) still leaves in
        #: the loop's large frames, not one frame per task
        self.thread_wrote = False
        self._release_scheduled = False  # a flush of the releases is scheduled
        #: the queued call that flushes the releases (one object: ``_thread_send``
        #: recognizes it)
        self._release_call = _Call(self.post_releases, ())
        #: the task that flushes releases, while it is parked (``_run_releases``)
        self._release_task: trio.lowlevel.Task | None = None

    def start(self, nursery: trio.Nursery) -> None:
        """The releases task runs in ``nursery`` (until the connection goes)."""
        nursery.start_soon(self._run_releases, name="session releases")

    def post(self, *messages: Any) -> None:
        """Send messages, in order, from any thread. Never blocks.

        On the loop, with nothing queued and no flush under way, one message (not a
        call) goes to the connection at once: nothing posted before is left to
        overtake, and a flush round per message (an async task's WaitKeys, a
        ReleaseKeys) costs a second lock and a batch list for nothing.
        """
        on_loop = threading.get_ident() == self.loop_thread
        with self.lock:
            closed = self._closed()
            if closed is not None:
                raise ClientClosedError(f"the client is closed: {closed}")
            direct = (on_loop and len(messages) == 1 and not self._queue
                      and not self._flushing and type(messages[0]) is not _Call)
            if not direct:
                if not on_loop and not self.thread_wrote and self._thread_send(messages):
                    self.thread_wrote = True
                    return
                self._queue.extend(messages)
                if self._flush_scheduled:
                    return
                self._flush_scheduled = True
                if not on_loop:
                    # (what must follow a thread's posts goes through this queue too, as
                    # call_in_order: the flag may mean a flush under way, which a
                    # run_sync_soon of the thread's own could overtake)
                    try:
                        self.trio_token.run_sync_soon(self._flush)
                    except trio.RunFinishedError:
                        raise ClientClosedError(
                            "the client's event loop has stopped") from None
        if direct:
            # (outside the lock, as send_in_order: a thread posting meanwhile only
            # queues, for a flush that runs on this loop after this call; through
            # send_many as a flush would: a client's idle connection writes it at once)
            self.conn.send_many([messages[0]])
        elif on_loop:
            self._flush()

    def send_in_order(self, message: Any) -> None:
        """Send ``message`` behind everything posted before, from any thread; dropped
        once the session is closed. For the worker's ledger, which calls it under its
        own lock at each event: so the events' messages reach the stream in ledger order,
        on whatever thread each event happens (``net/worker_ledger.py``).

        Unlike ``post`` it never flushes here: it may run inside a flush's item, or under
        the ledger's lock that a flushed item would take again. On the loop with nothing
        queued and no flush under way it sends at once (nothing can be overtaken).
        """
        on_loop = threading.get_ident() == self.loop_thread
        with self.lock:
            if self._closed() is not None:
                return
            if on_loop and not self._queue and not self._flushing:
                direct = True
            else:
                direct = False
                if not on_loop and self._thread_send((message,)):
                    return
                self._queue.append(message)
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    with contextlib.suppress(trio.RunFinishedError):
                        self.trio_token.run_sync_soon(self._flush)
        if direct:
            self.conn.send(message)

    def _thread_send(self, messages: tuple[Any, ...]) -> bool:
        """On a thread other than the loop's, under the lock: write ``messages`` to the
        connection at once when nothing posted before them is still queued or being
        flushed (``PeerConnection.send_from_thread``); True if they went.

        A blocking client's submit then reaches the scheduler without waking its loop,
        and a task thread's result without waking the worker's. The releases of futures
        that died on a thread, waiting for the flush their ``decref`` scheduled, go in
        the same frame, first (as that flush would have sent them): a blocking client's
        last future dies just before its next submit. The flush then finds nothing to do.
        """
        send = self._send_from_thread
        if send is None or self._holding:  # (a flush waiting for the lock holds nothing)
            return False
        queue = self._queue
        release_call = False
        if queue:
            if len(queue) > 1 or queue[0] is not self._release_call:
                return False
            release_call = True
        for message in messages:
            if type(message) is _Call:
                return False
        batch = list(messages)
        release = None
        if release_call:
            self._release_scheduled = False
            release = self._take_releases()
            if release is not None:
                batch.insert(0, release)
        if send(batch):
            if release_call:
                queue.clear()
            return True
        if release_call:  # (what that flush would have sent, in its place)
            queue[:] = [release] if release is not None else []
        return False

    def call_in_order(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop after everything posted before (any thread).

        Slot changes (secede, rejoin) go through here so the scheduler sees them in the
        order the task made them relative to its messages (a Seceded must precede the
        WaitKeys that follows it, or the scheduler would count a slot that is free).
        """
        self.post(_Call(fn, args))

    def _flush(self) -> None:
        """Send (or call) everything queued, in order, until the queue is empty (loop).

        Not reentrant: an item that posts on the loop (``post_releases``) only queues,
        and this loop sends it after the items queued before it; a nested flush would
        run items posted later before the rest of this batch (a slot passed on before it
        was passed here: ``SlotAccountingError``). Threads posting meanwhile see the
        flush scheduled and only queue, too.
        """
        if self._flushing:
            return
        self._flushing = True
        send_many = self.conn.send_many
        # the messages between calls go out together, also across rounds (a call that
        # posts, ``post_releases``, queues for the next round): a client's connection
        # sends them at once, as one frame, when its writer is idle (``send_many``)
        run: list[Any] = []
        try:
            for _ in range(_FLUSH_ROUNDS):
                with self.lock:
                    batch, self._queue = self._queue, []
                    self.thread_wrote = False
                    if not batch:
                        self._flush_scheduled = False
                        return
                    self._holding = True
                for item in batch:
                    if type(item) is _Call:
                        if run:
                            run, ready = [], run
                            send_many(ready)
                        item.fn(*item.args)
                    else:
                        run.append(item)
            # threads keep posting: let the loop do other work, and come back (the flag
            # stays set, so the order of what they post holds)
            with contextlib.suppress(trio.RunFinishedError):
                self.trio_token.run_sync_soon(self._flush)
        except BaseException:
            with self.lock:  # (a bug in an item: later posts must still schedule a flush)
                self._flush_scheduled = False
            raise
        finally:
            if run:  # (before any flush scheduled meanwhile: it runs after this one)
                send_many(run)
            self._holding = False
            self._flushing = False

    # ------------------------------------------------------------------ releases

    def release_later(self) -> bool:
        """Under the lock: a key was released; its ``ReleaseKeys`` goes with the others of
        its burst. From a thread (a task's futures die as it returns, just before it
        reports its end) it rides the flush that the thread's next post schedules
        anyway, or writes itself (``_thread_send``). True if the caller, on the loop,
        must ``wake_releases`` once it has left the lock."""
        if self._release_scheduled:
            return False
        self._release_scheduled = True
        if threading.get_ident() == self.loop_thread:
            return True
        self._queue.append(self._release_call)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            with contextlib.suppress(trio.RunFinishedError):
                self.trio_token.run_sync_soon(self._flush)
        return False

    def wake_releases(self) -> None:
        """Have the releases sent once the loop's current burst is over (loop, outside
        the lock)."""
        task = self._release_task
        if task is not None and not _running_now(task):  # (on the loop: this thread)
            self._release_task = None
            trio.lowlevel.reschedule(task)
            return
        with contextlib.suppress(trio.RunFinishedError):
            self.trio_token.run_sync_soon(self.post_releases)

    def post_releases(self) -> None:
        """Send the releases collected so far, if any (loop)."""
        with self.lock:
            self._release_scheduled = False
            release = self._take_releases()
        if release is not None:
            try:
                self.post(release)
            except ClientClosedError:
                pass

    async def _run_releases(self) -> None:
        """Send the releases whenever a decref on the loop asks (``wake_releases``).

        Futures that die on the loop thread (an async task's, as it returns) have their
        ReleaseKeys sent once their burst is over: a wake-up of this task, parked
        without any object (``reschedule``), costs no syscall. Through
        ``run_sync_soon`` every such burst wrote the loop's wake-up socket, and woke
        the loop's entry-queue task to read it.

        Cancellation: it stops (with the nursery, when the connection goes); a decref
        after that uses ``run_sync_soon`` again.
        """
        while True:
            self._release_task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._unpark_releases)
            self.post_releases()

    def _unpark_releases(self, _: Any) -> trio.lowlevel.Abort:
        self._release_task = None
        return trio.lowlevel.Abort.SUCCEEDED


#: batches one ``Outbox._flush`` sends before it yields to the rest of the loop
_FLUSH_ROUNDS = 8


def _running_now(task: trio.lowlevel.Task) -> bool:
    """Whether ``task`` is the one running (loop thread). A finalizer (a Future that a
    collection ends) can run in the releases task itself, between its noting that it
    parks and its parking: rescheduling it then would wake a task that is not asleep."""
    try:
        return trio.lowlevel.current_task() is task
    except RuntimeError:  # (the run loop's own code, between tasks)
        return False


class _Call:
    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
