"""Large task arguments and functions, sent out of band like a scatter.

A task's function (``RegisterFunction``) and pickled arguments (``SubmitTask``) travel
through the scheduler, which stores them until the task runs. Above ``inline_limit``
that would put the bytes into the scheduler's memory, and above the WebSocket message
limit it would break the connection. So ``Session.submit`` moves them out of band:

1. Each top-level argument whose data says it is large (``serialize.buffer_size``:
   bytes, bytearrays, arrays) is scattered on its own and replaced by its future. It
   travels client -> worker over the bulk data path (its buffers uncopied), and the task
   depends on it as on any future.
2. If the pickled arguments, or the pickled function, are still larger than the limit,
   each is scattered as one value and the task runs :func:`run_packed` (or
   :func:`run_packed_async`) with them, which unpickles the arguments on the worker and
   calls the function.

The task's key stays the caller's (its function's name). The futures of these
scatters are held by the task's ``KeyState`` (``held``) for as long as the task's own
future lives: a task recomputed after a worker loss needs its arguments again, and the
owner must still hold a scatter to upload it again.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from .. import serialize
from .futures import Future

#: scatters one value, returning its future (``Session.scatter_one``)
Scatter = Callable[[Any], Future[Any]]


def scatter_large_args(scatter: Scatter, args: tuple[Any, ...], kwargs: dict[str, Any],
                       limit: int, *, shared: MutableMapping[int, Future[Any]] | None = None,
                       this_call: MutableMapping[int, Future[Any]] | None = None,
                       ) -> tuple[tuple[Any, ...], dict[str, Any], list[Future[Any]]]:
    """Replace each top-level argument larger than ``limit`` by the future of its scatter.

    The same object is uploaded once: a ``bytes`` object (immutable) for as long as its
    scatter's future lives (``shared``, by ``id``, checked by identity), anything else
    within one ``map`` call (``this_call``: no user code runs in between, so it cannot
    have changed; across calls it may have been modified, and is uploaded again).

    Returns:
        The new arguments and the futures to hold while the task's future lives.
    """
    # (first, and without a closure or generators: this runs for every task submitted,
    # and almost none has a large argument)
    for v in args:
        if _big(v, limit):
            break
    else:
        for v in kwargs.values():
            if _big(v, limit):
                break
        else:
            return args, kwargs, []
    held: list[Future[Any]] = []

    def out(v: Any) -> Any:
        size = serialize.buffer_size(v)
        if size is None or size <= limit or isinstance(v, Future):
            return v
        cache = shared if type(v) is bytes else this_call
        fut = cache.get(id(v)) if cache is not None else None
        if fut is None or fut._state.value is not v:
            fut = scatter(v)
            if cache is not None:
                cache[id(v)] = fut
        held.append(fut)
        return fut

    return tuple(out(a) for a in args), {k: out(v) for k, v in kwargs.items()}, held


def _big(v: Any, limit: int) -> bool:
    size = serialize.buffer_size(v)
    return size is not None and size > limit


def pack(scatter: Scatter, fn: Callable[..., Any], fn_blob: bytes, payload: bytes,
         deps: list[str], is_future: Callable[[Any], bool], limit: int, is_async: bool,
         ) -> tuple[Callable[..., Any], bytes, list[str], list[Future[Any]]]:
    """A task calling :func:`run_packed` with the function and the pickled arguments,
    each scattered when larger than ``limit``.

    Returns:
        The function to submit, its payload, its dependencies (``deps`` and the
        scatters), and the futures to hold while the task's future lives.
    """
    held: list[Future[Any]] = []
    fn_arg: Any = fn
    if len(fn_blob) > limit:
        fn_arg = scatter(fn)
        held.append(fn_arg)
    pay_arg: Any = payload
    if len(payload) > limit:
        pay_arg = scatter(payload)
        held.append(pay_arg)
    values = {k: serialize.Dep(k) for k in deps}

    def dep_or_future(obj: Any) -> bool:
        return is_future(obj) or type(obj) is serialize.Dep

    new_payload, new_deps = serialize.dumps_payload((fn_arg, pay_arg, values), {},
                                                    dep_or_future)
    return (run_packed_async if is_async else run_packed), new_payload, new_deps, held


def run_packed(fn: Callable[..., Any], payload: bytes, values: dict[str, Any]) -> Any:
    """Run ``fn`` on the arguments pickled in ``payload`` (on the worker); ``values``
    are the task's dependencies, put where its futures were."""
    args, kwargs = serialize.loads_payload(payload, values)
    return fn(*args, **kwargs)


async def run_packed_async(fn: Callable[..., Any], payload: bytes,
                           values: dict[str, Any]) -> Any:
    """:func:`run_packed` for an ``async def`` function (cancellation: as the task's)."""
    args, kwargs = serialize.loads_payload(payload, values)
    return await fn(*args, **kwargs)
