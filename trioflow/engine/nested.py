"""Futures inside nested containers, as dask's ``gather`` and ``scatter`` see them.

``gather`` finds the futures inside lists, tuples, sets, dicts and namedtuples
(``futures_in``) and puts the values back in the same shape (``assemble``); ``scatter``
splits a plain dict, list or tuple into one future per item (``split_scatter``). Both
clients, blocking and async, share these.
"""

from __future__ import annotations

from typing import Any

from ..serialize import DESCEND, is_namedtuple, map_nested
from .futures import Future
from .session import Session

#: gather looks this deep for futures (a sanity bound, not a user-visible limit)
_DEPTH = 1000

def by_session(futures: list[Future[Any]]) -> list[tuple[Any, list[Future[Any]]]]:
    """Futures grouped by the session they belong to (a cancel is sent per session)."""
    groups: dict[int, tuple[Any, list[Future[Any]]]] = {}
    for f in futures:
        groups.setdefault(id(f._session), (f._session, []))[1].append(f)
    return list(groups.values())


def futures_in(futures: Any, errors: str) -> list[Future[Any]]:
    """The futures inside ``futures`` (checking ``errors``), for gather."""
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
    if _flat(futures):  # (the common gather: a list of futures; no walk)
        return list(futures)
    found: list[Future[Any]] = []

    def collect(obj: Any) -> Any:
        if type(obj) is not Future:
            return DESCEND
        found.append(obj)
        return obj

    map_nested(futures, collect, _DEPTH)
    return found


def assemble(futures: Any, values: dict[str, Any], errors: str) -> Any:
    """``futures`` with values in place of Futures (failed ones left out with "skip")."""
    if _flat(futures):
        got = [values[f.key] for f in futures if f.key in values]
        return got if type(futures) is list else tuple(got)
    if errors == "skip" and isinstance(futures, list):
        futures = [f for f in futures if type(f) is not Future or f.key in values]
    return map_nested(futures, lambda obj: values[obj.key] if type(obj) is Future else DESCEND,
                      _DEPTH)


def _flat(futures: Any) -> bool:
    """Whether ``futures`` is a list or tuple of futures only."""
    if type(futures) is not list and type(futures) is not tuple:
        return False
    for f in futures:
        if type(f) is not Future:
            return False
    return True


def key_of(future: Future | str) -> str:
    """The key ``why`` asks about: a future's, or the key itself."""
    if isinstance(future, str):
        return future
    key = getattr(future, "key", None)
    if not isinstance(key, str):
        raise TypeError(f"why() takes a future or a key, not {type(future).__name__}")
    return key


def split_scatter(session: Session, data: Any, workers: Any = None) -> Any:
    """``data`` placed on the cluster: a future, or a container of one per item; large
    values on one of ``workers`` (names) when given.

    Raises:
        TypeError: ``workers`` is not a worker name or a list of them.
    """
    names = scatter_workers(workers)

    def one(value: Any) -> Any:
        return session.scatter_one(value, None, names)

    # as dask: only a plain dict, list or tuple (or a namedtuple) is split into one
    # future per item; any other value, a dict or list subclass too, is one future
    # (so its type survives)
    t = type(data)
    if t is dict:
        return {k: one(v) for k, v in data.items()}
    if t is list or t is tuple:
        return t(one(v) for v in data)
    if is_namedtuple(data):
        return t(*(one(v) for v in data))
    return one(data)


def scatter_workers(workers: Any) -> tuple[str, ...]:
    """``scatter``'s ``workers=`` as a tuple of names (empty: any worker).

    Raises:
        TypeError: not a name or a list of names.
    """
    names = (workers,) if isinstance(workers, str) else tuple(workers or ())
    if any(not isinstance(w, str) for w in names):
        raise TypeError(f"scatter: workers= takes worker names (see client.nthreads()), "
                        f"got {workers!r}")
    return names


def scattered(futures: Any) -> list[Future[Any]]:
    """The futures ``split_scatter`` returned, whatever their shape."""
    if isinstance(futures, Future):
        return [futures]
    return list(futures.values() if type(futures) is dict else futures)


def futures_of(obj: Any) -> list[Future[Any]]:
    """The futures inside ``obj``, each once, in the order found (dask's
    ``futures_of``): inside containers, as ``gather`` finds them, and inside the graphs
    of dask collections (a persisted collection is backed by futures)."""
    found: list[Future[Any]] = []

    def collect(x: Any) -> Any:
        if type(x) is Future:
            found.append(x)
            return x
        graph = getattr(x, "__dask_graph__", None)  # dask's protocol: no dask import
        if graph is not None and not isinstance(x, type) and callable(graph):
            for node in dict(graph()).values():
                # (a graph node is a value, or a dask task spec whose data sits in .value)
                map_nested(getattr(node, "value", node), collect, _DEPTH)
            return x
        return DESCEND

    map_nested(obj, collect, _DEPTH)
    return list(dict.fromkeys(found))
