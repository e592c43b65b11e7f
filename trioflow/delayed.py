"""``@trioflow.delayed`` and ``trioflow.compute``: build a graph lazily, run it at once.

``compute(*objs)`` submits every ``Delayed`` reachable from ``objs`` (each once, even
when shared), passing Futures for their inputs, and returns the values as a tuple.
Inside a sync task it gives the task's slot back while it waits (as the reference
document's Fibonacci example needs). On an event loop (async main, async task) it
returns an awaitable: ``a, b = await trioflow.compute(x, y)``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

from .engine.context import current_run
from .engine.waiting import _in_trio
from .in_task import get_client

_ids = itertools.count(1)


class Delayed:
    """A call not made yet: ``fn(*args, **kwargs)``, where args may hold Delayeds."""

    __slots__ = ("args", "fn", "key", "kwargs", "pure")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 pure: bool = False) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.pure = pure
        self.key = f"{getattr(fn, '__name__', 'delayed')}-delayed-{next(_ids)}"

    def compute(self) -> Any:
        """Run this call (and everything it needs) on the cluster; its value."""
        if _in_trio():
            return _first(compute(self))
        return compute(self)[0]

    def __repr__(self) -> str:
        return f"Delayed({self.key!r})"


async def _first(awaitable: Any) -> Any:
    return (await awaitable)[0]


def delayed(fn: Callable[..., Any] | None = None, *, pure: bool = False) -> Any:
    """Make calls of ``fn`` lazy: they return ``Delayed`` objects until computed."""
    if fn is None:
        return functools.partial(delayed, pure=pure)

    @functools.wraps(fn)
    def lazy(*args: Any, **kwargs: Any) -> Delayed:
        return Delayed(fn, args, kwargs, pure)

    lazy.__wrapped__ = fn  # type: ignore[attr-defined]
    return lazy


def _submit(client: Any, obj: Any, memo: dict[int, Any]) -> Any:
    t = type(obj)
    if t is Delayed:
        fut = memo.get(id(obj))
        if fut is None:
            args = tuple(_submit(client, a, memo) for a in obj.args)
            kwargs = {k: _submit(client, v, memo) for k, v in obj.kwargs.items()}
            fut = memo[id(obj)] = client.submit(obj.fn, *args, pure=obj.pure, **kwargs)
        return fut
    if t in (list, tuple, set, frozenset):
        return t(_submit(client, x, memo) for x in obj)
    if t is dict:
        return {k: _submit(client, v, memo) for k, v in obj.items()}
    return obj


def compute(*objs: Any) -> Any:
    """Compute Delayed objects (also inside lists/dicts); a tuple of their values."""
    client = get_client()
    memo: dict[int, Any] = {}
    futures = [_submit(client, obj, memo) for obj in objs]
    if _in_trio():
        async def wait() -> tuple[Any, ...]:
            return tuple(await client.gather(futures))

        return wait()
    ctx = current_run()
    secede_here = ctx is not None and not ctx.seceded and not ctx.is_async
    if secede_here:
        ctx.secede()
    try:
        return tuple(client.gather(futures))
    finally:
        if secede_here:
            ctx.rejoin()
