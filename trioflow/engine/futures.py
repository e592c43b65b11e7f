"""Futures: handles to results that live on the cluster.

A ``Future`` works from async code (``await future``) and from threads
(``future.result()``). The result stays on the worker that computed it (or, when
small, with the scheduler) until the last Future for the key is garbage collected.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Generic, TypeVar

from ..errors import CancelledError, ClientClosedError
from .context import current_session
from .keys import ERRED, PENDING, KeyState, error_to_exception
from .protocols import FutureSession

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

    def done(self) -> bool:
        """Whether the task finished or failed."""
        return self._state.status is not PENDING

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

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the task: if queued it never runs; this future and every task that
        depends on it fail with CancelledError, at once. A finished task is cancelled
        too (as in dask): its value is dropped from the cluster."""
        self._session.cancel([self._state], reason)

    def __await__(self) -> Generator[Any, None, T_co]:
        return self._result_async().__await__()

    async def _result_async(self) -> T_co:
        await self._session.wait_async([self._state])
        if self._state.status is ERRED:  # raised here: no frames of trioflow's own below
            raise task_error(self._state)
        return await self._session.value_async(self._state)

    def __repr__(self) -> str:
        st = self._state
        extra = f" type={st.type_name.rsplit('.', 1)[-1]}" if st.type_name else ""
        return f"<Future {self.key} status={self.status}{extra}>"

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Future) and other.key == self.key


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


