"""Futures: handles to results that live on the cluster.

A ``Future`` works from async code (``await future``) and from threads
(``future.result()``). The result stays on the worker that computed it (or, when
small, with the scheduler) until the last Future for the key is garbage collected.
"""

from __future__ import annotations

import concurrent.futures
import html
import logging
import sys
import threading
import types
from collections.abc import Callable, Generator, Iterable
from typing import Any, Generic, TypeVar, cast

import tblib
import trio

from .. import protocol as p
from ..errors import CancelledError, ClientClosedError
from . import asyncio_waits
from .asyncio_waits import running_asyncio
from .context import current_session
from .keys import ERRED, FINISHED, PENDING, KeyState, SyncWaiter, error_to_exception
from .protocols import FutureSession

logger = logging.getLogger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Future(Generic[T_co]):
    """A task's result, wherever it is computed.

    Attributes:
        key: the task's key (unique per task unless ``pure=True`` was asked).
    """

    __slots__ = ("__weakref__", "_session", "_state", "key")

    #: dask's duck-typed future marker: inside a dask graph a Future is a reference to
    #: its key (a dependency), not a value (``dask._task_spec``)
    __dask_future__ = True

    def __init__(self, session: FutureSession, state: KeyState) -> None:
        self._session = session
        self._state = state
        self.key = state.key
        session.incref(state)

    def __del__(self) -> None:
        try:
            self._session.decref(self._state)
        except Exception:  # interpreter shutdown: nothing left to release
            pass

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_rebuild_future, (self.key,))

    @property
    def status(self) -> str:
        """``"pending"``, ``"finished"``, ``"error"`` or ``"cancelled"`` (as in dask)."""
        st = self._state
        if st.status is ERRED and _is_cancel(st.error):
            return "cancelled"
        return st.status.value

    @property
    def type(self) -> type | None:
        """The class of the result once the task finished (dask's ``Future.type``);
        None before, after a failure, or when this process has not imported the
        module defining it (it is not imported for this)."""
        st = self._state
        return _imported_class(st.type_name) if st.status is FINISHED else None

    def done(self) -> bool:
        """Whether the task finished or failed."""
        return self._state.status is not PENDING

    def cancelled(self) -> bool:
        """Whether the task was cancelled (``status == "cancelled"``)."""
        st = self._state
        return st.status is ERRED and _is_cancel(st.error)

    def result(self, timeout: float | None = None) -> T_co:
        """Block until done; return the value or raise the task's exception.

        Raises:
            TimeoutError: not done within ``timeout`` seconds.
        """
        self._session.wait_sync([self._state], timeout)
        if self._state.status is ERRED:  # raised here: no frames of trioflow's own below
            raise task_error(self._state)
        return self._session.value(self._state)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Block until done; the task's exception, or None if it succeeded."""
        self._session.wait_sync([self._state], timeout)
        if self._state.status is ERRED:
            return error_to_exception(self._state.error)
        return None

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        """Block until done; the traceback of the task's exception as it was raised on
        the worker (a real traceback object: ``traceback.print_tb(f.traceback())``), or
        None if it succeeded or failed without running user code (cancelled, lost)."""
        self._session.wait_sync([self._state], timeout)
        st = self._state
        text = st.error.traceback if st.status is ERRED and type(st.error) is p.KeyErred else ""
        if not text.strip():
            return None
        # (tblib rebuilds frames from the text the worker formatted: the scheduler and
        # this client never unpickle a traceback, and the lines read as on the worker)
        try:
            return tblib.Traceback.from_string(text, strict=False).as_traceback()
        except (tblib.TracebackParseError, ValueError):
            return None

    def retry(self) -> None:
        """Run this failed future's task again (see ``Client.retry``), blocking this
        thread until the scheduler has done so; on an event loop use
        ``await client.retry([future])``.

        Raises:
            ValueError: it cannot run again (cancelled, an input released, ...).
        """
        session = self._session
        if session is _RELEASED:
            raise ValueError(f"retry: future {self.key!r} was released")
        if session.on_loop():
            raise RuntimeError("Future.retry() blocks, and this is the event loop's thread: "
                               "use `await client.retry([future])` there")
        trio.from_thread.run(session.services.retry, [self.key], trio_token=session.trio_token)

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the task: if queued it never runs; this future and every task that
        depends on it fail with CancelledError, at once. A finished task is cancelled
        too (as in dask): its value is dropped from the cluster."""
        self._session.cancel([self._state], reason)

    def add_done_callback(self, fn: Callable[[Future[T_co]], Any]) -> None:
        """Call ``fn(future)`` once the task is done (finished, failed or cancelled), as
        dask does: in a separate thread (one per process, shared by all callbacks, in
        order), never on an event loop; at once if it is done already. An exception
        raised by ``fn`` is logged, not raised anywhere.
        """
        session, st = self._session, self._state
        with session.lock:
            if st.status is PENDING:
                st.add_waiter(_Callback(self, fn))
                return
        _run_callback(self, fn)

    def release(self) -> None:
        """Let go of this future now instead of when it is garbage collected (dask's
        ``Future.release``). The result is released from the cluster once no other
        future holds it; this future raises CancelledError from now on."""
        session, st = self._session, self._state
        if session is _RELEASED:
            return
        released = KeyState(self.key)
        released.status = ERRED
        released.error = CancelledError(self.key, "released (Future.release() was called)")
        self._session = cast(FutureSession, _RELEASED)
        self._state = released
        session.decref(st)

    def __await__(self) -> Generator[Any, None, T_co]:
        if running_asyncio():  # an asyncio program: its loop waits, not Trio's
            return self._result_asyncio().__await__()
        return self._result_async().__await__()

    async def _result_asyncio(self) -> T_co:
        await asyncio_waits.wait_states(self._session, [self._state])
        if self._state.status is ERRED:  # raised here: no frames of trioflow's own below
            raise task_error(self._state)
        return cast(T_co, await asyncio_waits.value(self._session, self._state))

    async def _result_async(self) -> T_co:
        await self._session.wait_async([self._state])
        if self._state.status is ERRED:  # raised here: no frames of trioflow's own below
            raise task_error(self._state)
        return await self._session.value_async(self._state)

    def __repr__(self) -> str:
        st = self._state
        extra = f" type={st.type_name.rsplit('.', 1)[-1]}" if st.type_name else ""
        return f"<Future {self.key} status={self.status}{extra}>"

    def _repr_html_(self) -> str:
        """The future in a notebook: key, status and result type, escaped."""
        st = self._state
        kind = f", type: {html.escape(st.type_name)}" if st.type_name else ""
        return (f"<strong>Future: {html.escape(self.key)}</strong> "
                f"<span>status: {html.escape(self.status)}{kind}</span>")

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Future) and other.key == self.key


class _ReleasedSession:
    """The session of a released future: it holds nothing and releases nothing again."""

    lock = threading.Lock()

    def incref(self, ks: KeyState) -> None:
        pass

    def decref(self, ks: KeyState) -> None:
        pass

    def on_loop(self) -> bool:
        return False

    def wait_sync(self, states: list[KeyState], timeout: float | None = None) -> None:
        pass

    async def wait_async(self, states: list[KeyState]) -> None:
        pass

    def cancel(self, states: list[KeyState], reason: str) -> None:
        pass

    def value(self, ks: KeyState) -> Any:
        raise error_to_exception(ks.error)

    async def value_async(self, ks: KeyState) -> Any:
        raise error_to_exception(ks.error)


_RELEASED: Any = _ReleasedSession()

_callbacks_lock = threading.Lock()
_callback_pool: list[concurrent.futures.ThreadPoolExecutor] = []


def _run_callback(future: Future[Any], fn: Callable[[Any], Any]) -> None:
    """Run a done-callback in the process's callback thread (started on first use)."""
    with _callbacks_lock:
        if not _callback_pool:
            # one daemon-like thread for the process, as dask's client has: callbacks
            # may block, so never on a loop, and in the order the futures finished
            _callback_pool.append(concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="future-callbacks"))
        pool = _callback_pool[0]
    pool.submit(_call_logged, future, fn)


def _call_logged(future: Future[Any], fn: Callable[[Any], Any]) -> None:
    try:
        fn(future)
    except Exception:
        logger.exception("done-callback %r of %s raised", fn, future.key)


class _Callback(SyncWaiter):
    """Runs a done-callback when its key is done (called under the session's lock: it
    only hands the call, and its reference to the future, to the callback thread; the
    last reference to a Future must never be dropped under the lock it takes)."""

    __slots__ = ("_fn", "_future")

    def __init__(self, future: Future[Any], fn: Callable[[Any], Any]) -> None:
        super().__init__(1)
        self._future: Future[Any] | None = future
        self._fn = fn

    def key_done(self) -> None:
        future, self._future = self._future, None
        if future is not None:
            _run_callback(future, self._fn)


class _Keeper(SyncWaiter):
    """Holds a fire-and-forget key (a reference of its own) until the key is done; the
    reference is let go on the loop, outside the lock ``key_done`` is called under."""

    __slots__ = ("_session", "_state")

    def __init__(self, session: FutureSession, state: KeyState) -> None:
        super().__init__(1)
        self._session = session
        self._state = state

    def key_done(self) -> None:
        try:
            self._session.trio_token.run_sync_soon(self._session.decref, self._state)
        except trio.RunFinishedError:
            pass  # the session's loop is gone, and its keys with it


def fire_and_forget(futures: Future[Any] | Iterable[Future[Any]]) -> None:
    """Run these tasks to the end even if every other reference to their futures is
    dropped (dask's ``fire_and_forget``): this process holds them until they are done.

    Unlike dask, the hold lives in this process's client: closing the client (or the
    task's worker leaving, for futures held inside a task) still releases them.
    """
    fs = [futures] if isinstance(futures, Future) else list(futures)
    for f in fs:
        if not isinstance(f, Future):
            raise TypeError(f"fire_and_forget takes trioflow Futures, not {type(f).__name__}")
        session, st = f._session, f._state
        with session.lock:
            if st.status is not PENDING:
                continue
            st.refs += 1  # (what session.incref does; the lock is held here)
            st.add_waiter(_Keeper(session, st))


def _is_cancel(error: object) -> bool:
    return isinstance(error, CancelledError) or getattr(error, "kind", "") == "cancelled"


def task_error(ks: KeyState) -> BaseException:
    """The exception a failed key raises, with no traceback of its own yet: raised by
    the caller, the user's traceback shows their call and the task's remote one."""
    return error_to_exception(ks.error).with_traceback(None)


def _rebuild_future(key: str) -> Future[Any]:
    """A future unpickled inside data: bind it to the session of wherever we are (the
    running task's worker, else the default client)."""
    session = current_session()
    if session is None:
        raise ClientClosedError(
            f"a future ({key!r}) was unpickled where no trioflow client is open: unpickle "
            "it inside a task, inside trioflow.run, or with a Client open")
    return Future(session, session.adopt(key))


def _imported_class(name: str) -> type | None:
    """The class named ``module.qualname`` if its module is imported here, else None."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        obj: Any = sys.modules.get(".".join(parts[:cut]))
        if obj is None:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        return obj if isinstance(obj, type) else None
    return None
