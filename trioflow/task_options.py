"""dask's ``submit``/``map`` option names, which must never reach the user's function.

A dask user passes ``fifo_timeout=``, ``allow_other_workers=``, ``batch_size=`` and the
like by habit. trioflow's ``submit`` forwards unknown keyword arguments to the function
(as dask does), so without this check they would arrive there as arguments. Each name
is either honoured (when what it asks for is what trioflow does anyway) or refused with
a ``TypeError`` that names it and says what to do instead.
"""

from __future__ import annotations

from typing import Any

#: options with no effect on what a task computes: accepted, and ignored because
#: trioflow already behaves the way they ask for
_NO_EFFECT: dict[str, tuple[str, ...]] = {
    # trioflow orders ready tasks by priority, then depth, then submission order
    "fifo_timeout": ("submit", "map"),
    # map sends its tasks in one batch of messages anyway
    "batch_size": ("map",),
}

#: options accepted only with their dask default, and what to do instead otherwise
_DEFAULT_ONLY: dict[str, tuple[Any, str]] = {
    "actor": (False, "trioflow has no actors: keep the state in a task's result and "
                     "pass its future to the tasks that use it"),
    "actors": (False, "trioflow has no actors: keep the state in a task's result and "
                      "pass its future to the tasks that use it"),
}


def take_dask_options(kwargs: dict[str, Any], method: str,
                      workers: object | None) -> None:
    """Remove dask's option names from ``kwargs`` (the function's keyword arguments).

    Args:
        kwargs: the keyword arguments ``submit``/``map`` would pass to the function;
            changed in place.
        method: ``"submit"`` or ``"map"``, for the messages.
        workers: the ``workers=`` restriction given (``allow_other_workers`` needs it).

    Raises:
        TypeError: an option asks for something trioflow does not do; names it.
    """
    if not kwargs:
        return
    for name in list(kwargs):
        if method in _NO_EFFECT.get(name, ()):
            del kwargs[name]
        elif name in _DEFAULT_ONLY:
            default, instead = _DEFAULT_ONLY[name]
            value = kwargs.pop(name)
            if value != default:
                raise TypeError(f"{method}() got {name}={value!r}, a dask option trioflow "
                                f"does not support: {instead}")
        elif name == "allow_other_workers":
            value = kwargs.pop(name)
            if value and workers is not None:
                raise TypeError(
                    f"{method}() got allow_other_workers=True: trioflow's workers= is a "
                    "strict restriction, never a preference; leave out workers= to let "
                    "any worker run it")
