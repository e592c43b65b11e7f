"""``@trioflow.delayed`` and ``compute``/``compute_async``: build a graph lazily, run it.

``compute(*objs)`` submits every ``Delayed`` reachable from ``objs`` (each once, even
when shared), passing Futures for their inputs, and blocks until their values are
back, as a tuple. Inside a sync task it gives the task's slot back while it waits (as
the reference document's Fibonacci example needs). On an event loop (async main, async
task) use ``a, b = await trioflow.compute_async(x, y)``.

Deprecated (one release): ``compute`` and ``Delayed.compute`` called on an event loop
return an awaitable, as they used to, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar, cast, overload

import trio

from .client import AsyncClient, Client
from .dask_integration import is_dask_collection
from .engine.context import current_run
from .engine.futures import Future
from .engine.waiting import _in_trio
from .in_task import get_client

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")

_ids = itertools.count(1)


class Delayed(Generic[T]):
    """A call not made yet: ``fn(*args, **kwargs)``, where args may hold Delayeds."""

    __slots__ = ("args", "fn", "key", "kwargs", "pure")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 pure: bool = False) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.pure = pure
        self.key = f"{getattr(fn, '__name__', 'delayed')}-delayed-{next(_ids)}"

    def compute(self) -> T:
        """Run this call (and everything it needs) on the cluster; block for its value.

        On an event loop use ``await d.compute_async()``: called there, this returns
        that awaitable instead (deprecated, with a ``DeprecationWarning``).
        """
        if _in_trio():
            _deprecated("Delayed.compute()", "await delayed_obj.compute_async()")
            return cast(T, self.compute_async())
        return cast(T, _compute_sync((self,))[0])

    async def compute_async(self) -> T:
        """``compute`` for the event loop: ``value = await d.compute_async()``.

        Cancellation: the wait stops; the submitted tasks go on running.
        """
        return cast(T, (await _compute_async((self,)))[0])

    def __trioflow_submit__(self, client: Client | AsyncClient,
                            memo: dict[int, Future[Any]]) -> Future[T]:
        """Submit this call and what it depends on through ``client``: its Future
        (``client.compute(d)``, as dask's client computes a ``dask.delayed``). ``memo``
        is shared by one ``compute``: a call several of its arguments share runs once."""
        return cast("Future[T]", _submit(client, self, memo))

    def __repr__(self) -> str:
        return f"Delayed({self.key!r})"


class _Delay(Protocol):
    """What ``delayed(pure=...)`` returns: a decorator keeping the function's result type."""

    @overload
    def __call__(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Delayed[T]]: ...
    @overload
    def __call__(self, fn: Callable[..., T]) -> Callable[..., Delayed[T]]: ...


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} on the event loop returns an awaitable only for backwards "
                  f"compatibility; use `{new}` instead", DeprecationWarning, stacklevel=3)


@overload
def delayed(fn: Callable[..., Awaitable[T]], *,
            pure: bool = False) -> Callable[..., Delayed[T]]: ...
@overload
def delayed(fn: Callable[..., T], *, pure: bool = False) -> Callable[..., Delayed[T]]: ...
@overload
def delayed(fn: None = None, *, pure: bool = False) -> _Delay: ...


def delayed(fn: Callable[..., Any] | None = None, *, pure: bool = False) -> Any:
    """Make calls of ``fn`` lazy: they return ``Delayed`` objects until computed."""
    if fn is None:
        return functools.partial(delayed, pure=pure)

    @functools.wraps(fn)
    def lazy(*args: Any, **kwargs: Any) -> Delayed[Any]:
        return Delayed(fn, args, kwargs, pure)

    return lazy


def _submit(client: Client | AsyncClient, obj: Any, memo: dict[int, Future[Any]]) -> Any:
    t = type(obj)
    if t is Delayed:
        fut = memo.get(id(obj))
        if fut is None:
            args = tuple(_submit(client, a, memo) for a in obj.args)
            kwargs = {k: _submit(client, v, memo) for k, v in obj.kwargs.items()}
            fut = memo[id(obj)] = client.submit(obj.fn, *args, pure=obj.pure, **kwargs)
        return fut
    if is_dask_collection(obj):  # a dask Delayed, array, bag or dataframe
        return client.compute(obj)
    if t in (list, tuple, set, frozenset):
        return t(_submit(client, x, memo) for x in obj)
    if t is dict:
        return {k: _submit(client, v, memo) for k, v in obj.items()}
    return obj


def _submit_all(objs: tuple[Any, ...]) -> tuple[Client | AsyncClient, list[Any]]:
    client = get_client()
    memo: dict[int, Future[Any]] = {}
    return client, [_submit(client, obj, memo) for obj in objs]


@overload
def compute(a: Delayed[T1], /) -> tuple[T1]: ...
@overload
def compute(a: Delayed[T1], b: Delayed[T2], /) -> tuple[T1, T2]: ...
@overload
def compute(*objs: Any) -> tuple[Any, ...]: ...


def compute(*objs: Any) -> tuple[Any, ...]:
    """Compute Delayed objects (also inside lists/dicts); block for a tuple of their
    values. Inside a sync task the slot is given back while waiting.

    On an event loop use ``await compute_async(...)``: called there, this returns that
    awaitable instead (deprecated, with a ``DeprecationWarning``).
    """
    if _in_trio():
        _deprecated("trioflow.compute()", "await trioflow.compute_async(...)")
        return cast("tuple[Any, ...]", _compute_async(objs))
    return _compute_sync(objs)


def _compute_sync(objs: tuple[Any, ...]) -> tuple[Any, ...]:
    client, futures = _submit_all(objs)
    if isinstance(client, AsyncClient):  # a thread of an async main: block on its session
        client = Client._in_task(client._session)
    ctx = current_run()
    secede_here = ctx is not None and not ctx.seceded and not ctx.is_async
    if secede_here:
        assert ctx is not None
        ctx.secede()
    try:
        return tuple(client.gather(futures))
    finally:
        if secede_here:
            assert ctx is not None
            ctx.rejoin()


@overload
async def compute_async(a: Delayed[T1], /) -> tuple[T1]: ...
@overload
async def compute_async(a: Delayed[T1], b: Delayed[T2], /) -> tuple[T1, T2]: ...
@overload
async def compute_async(*objs: Any) -> tuple[Any, ...]: ...


async def compute_async(*objs: Any) -> tuple[Any, ...]:
    """``compute`` for the event loop: ``a, b = await trioflow.compute_async(x, y)``.

    Inside an async task the slot is given back while waiting.

    Cancellation: the wait stops; the submitted tasks go on running.
    """
    return await _compute_async(objs)


async def _compute_async(objs: tuple[Any, ...]) -> tuple[Any, ...]:
    client, futures = _submit_all(objs)
    if isinstance(client, AsyncClient):
        return tuple(await client.gather(futures))
    session = client._session
    if session.on_loop():  # a blocking Client of this very loop (trioflow.run's, say)
        return tuple(await AsyncClient._in_task(session).gather(futures))
    # a blocking Client running its own loop in another thread: wait in a thread
    return tuple(await trio.to_thread.run_sync(client.gather, futures,
                                               abandon_on_cancel=True))
