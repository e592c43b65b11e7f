"""dask collections on trioflow: dask's scheduler protocol (``get``), ``compute`` and
``persist``, and trioflow as dask's default scheduler while a ``Client`` is current.

dask is optional (``pip install 'trioflow[dask]'``): this module imports without it and
says what to install when a dask function is used without it.

How a graph runs: the graph is materialized (``__dask_graph__``), converted to dask's
task spec (``convert_legacy_graph``), and every node reachable from the requested keys
becomes one trioflow task, submitted in dependency order. A node's task receives the
values of the nodes it depends on in a dict (futures inside dicts are dependencies) and
calls the node with it, as dask's own schedulers do. dask's key is the task key (a
tuple key as its ``str``), so two computations of the same graph share their tasks, as
in dask. A persisted collection's graph holds trioflow futures; they are used as they
are, not submitted again.

In a task, ``dask.compute`` runs the graph on the task's own cluster and gives the
task's slot back while it waits, like ``trioflow.compute``.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .engine.context import current_run, default_client
from .engine.futures import Future
from .engine.session import Session


def _dask() -> Any:
    """The dask module (imported on first use: it takes seconds to import).

    Raises:
        ImportError: dask is not installed; says how to install it.
    """
    try:
        import dask
        import dask.base
    except ImportError as exc:
        raise ImportError("this needs dask: pip install 'trioflow[dask]'") from exc
    return dask


def is_dask_collection(obj: object) -> bool:
    """Whether ``obj`` is a dask collection (False when dask was never imported: then it
    cannot be one, and dask is not imported just to ask)."""
    if "dask" not in sys.modules:
        return False
    return bool(_dask().is_dask_collection(obj))


def task_key(key: Any) -> str:
    """The trioflow key of a dask key (a tuple key as its ``str``, as dask prints it)."""
    return key if isinstance(key, str) else str(key)


def _execute(node: Any, values: dict[Any, Any]) -> Any:
    """Run one dask graph node on a worker, given its dependencies' values."""
    return node(values)


def _flatten(keys: Any) -> Iterator[Any]:
    if isinstance(keys, list):
        for k in keys:
            yield from _flatten(k)
    else:
        yield keys


def _pack(keys: Any, values: Mapping[Any, Any]) -> Any:
    if isinstance(keys, list):
        return [_pack(k, values) for k in keys]
    return values[keys]


def _graph_of(dsk: Any) -> dict[Any, Any]:
    from dask._task_spec import convert_legacy_graph

    if not isinstance(dsk, Mapping):
        dsk = dsk.__dask_graph__()
    return dict(convert_legacy_graph(dict(dsk)))


def graph_to_futures(session: Session, dsk: Any, keys: Sequence[Any],
                     priority: int = 0, retries: int = 0) -> dict[Any, Future[Any]]:
    """Submit the part of graph ``dsk`` that ``keys`` need; a Future per graph key.

    Raises:
        KeyError: a key is not in the graph; the message names it.
    """
    _dask()
    from dask._task_spec import DataNode, GraphNode
    from dask.order import order

    graph = _graph_of(dsk)
    # dask's static order (which node first, so blocks are consumed soon after they
    # are made): a node's trioflow priority, below the user's priority, keeps a big
    # array's memory near dask's instead of computing every input block first
    ranks = order(graph)
    spread = len(graph) + 1
    futures: dict[Any, Future[Any]] = {}
    # iterative depth-first post-order: dependencies are submitted before dependents
    for root in keys:
        if root in futures:
            continue
        stack: list[tuple[Any, bool]] = [(root, False)]
        while stack:
            key, expanded = stack.pop()
            if key in futures:
                continue
            node = graph.get(key)
            if node is None:
                # a key outside the graph: a persisted collection's result, which this
                # session holds a future for
                held = session.table.lookup(key) if isinstance(key, str) else None
                if held is None:
                    raise KeyError(f"dask key {key!r} is neither in the graph nor the key "
                                   "of a future this client holds")
                futures[key] = Future(session, held)
                continue
            if isinstance(node, DataNode) and isinstance(node.value, Future):
                futures[key] = node.value
                continue
            deps = node.dependencies if isinstance(node, GraphNode) else ()
            if not expanded:
                stack.append((key, True))
                stack.extend((d, False) for d in deps if d not in futures)
                continue
            values = {d: futures[d] for d in deps}
            rank = ranks.get(key, 0)
            futures[key] = session.submit(_execute, (node, values), {}, key=task_key(key),
                                          priority=priority * spread - rank,
                                          retries=retries)
    return futures


def compute(session: Session, collections: Any, optimize_graph: bool = True,
            priority: int = 0, retries: int = 0) -> Any:
    """Submit dask collections; a Future per collection (one Future if given one),
    others passed through, as ``dask.distributed.Client.compute``."""
    singleton = not isinstance(collections, list | tuple | set | frozenset)
    items = [collections] if singleton else list(collections)
    variables = [c for c in items if is_dask_collection(c)]
    futures: list[Any] = []
    if variables:
        dask = _dask()
        from dask._expr import FinalizeCompute
        from dask.base import collections_to_expr

        expr = FinalizeCompute(collections_to_expr(variables, optimize_graph)).optimize()
        names = list(_flatten(expr.__dask_keys__()))
        by_key = graph_to_futures(session, expr, names, priority, retries)
        it = iter(names)
        futures = [by_key[next(it)] if dask.is_dask_collection(c) else c for c in items]
    else:
        futures = items
    return futures[0] if singleton else futures


def persist(session: Session, collections: Any, optimize_graph: bool = True,
            priority: int = 0, retries: int = 0) -> Any:
    """Start computing dask collections; the same collections, backed by futures."""
    dask = _dask()
    from dask.base import collections_to_expr

    singleton = not isinstance(collections, list | tuple | set | frozenset)
    items = [collections] if singleton else list(collections)
    for c in items:
        if not dask.is_dask_collection(c):
            raise TypeError(f"persist takes dask collections, not {type(c).__name__}")
    expr = collections_to_expr(items, optimize_graph).optimize()
    keys = expr.__dask_keys__()
    by_key = graph_to_futures(session, expr, list(_flatten(keys)), priority, retries)
    out = []
    for c, ks in zip(items, keys):
        func, args = c.__dask_postpersist__()
        out.append(func({k: by_key[k] for k in _flatten(ks)}, *args))
    return out[0] if singleton else out


def get(session: Session, dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """dask's scheduler protocol: compute ``keys`` of ``dsk``, block for their values
    in the nested-list shape of ``keys``. In a sync task the slot is given back while
    waiting; in an async task this would block the worker's event loop, so it refuses.

    Raises:
        RuntimeError: called on an event loop thread (use ``Client.compute`` and await).
    """
    if session.on_loop():
        raise RuntimeError(
            "dask's blocking compute() was called on an event loop thread (an async task "
            "or async main): use `await client.gather(client.compute(x))` there instead")
    flat = list(_flatten(keys)) if isinstance(keys, list) else [keys]
    by_key = graph_to_futures(session, dsk, flat)
    ctx = current_run()
    secede_here = (ctx is not None and ctx.session is session and not ctx.seceded
                   and not ctx.is_async)
    if secede_here:
        assert ctx is not None
        ctx.secede()
    try:
        states = [by_key[k]._state for k in flat]
        session.wait_sync(states)
        session.prefetch_sync(states)
        values = {k: by_key[k].result() for k in flat}
    finally:
        if secede_here:
            assert ctx is not None
            ctx.rejoin()
    return _pack(keys, values)


def _current_session() -> Session | None:
    ctx = current_run()
    if ctx is not None and isinstance(ctx.session, Session):
        return ctx.session
    found = default_client()
    if found is not None and isinstance(found[1], Session):
        return found[1]
    return None


def trioflow_get(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """The scheduler trioflow installs as dask's default: the running task's cluster,
    else the current client's; with neither, a current dask.distributed client, the
    scheduler configured before trioflow's, or dask's threaded scheduler."""
    session = _current_session()
    if session is not None:
        return get(session, dsk, keys, **kwargs)
    if "distributed" in sys.modules:  # a dask.distributed client may be the one meant
        import distributed

        try:
            return distributed.get_client().get(dsk, keys, **kwargs)
        except ValueError:
            pass
    if _previous:  # the scheduler the user had configured before trioflow's
        from dask.base import get_scheduler

        return get_scheduler(scheduler=_previous[0])(dsk, keys, **kwargs)
    import dask.threaded

    return dask.threaded.get(dsk, keys, **kwargs)


#: dask's configured scheduler before trioflow installed its own (if one was set)
_previous: list[Any] = []


def _install(dask_module: Any) -> None:
    """Make ``trioflow_get`` dask's configured scheduler, remembering a prior one."""
    current = dask_module.config.get("scheduler", None)
    if current is not None and current is not trioflow_get and not _previous:
        _previous.append(current)
    dask_module.config.set(scheduler=trioflow_get)


# ---------------------------------------------------------------- the default scheduler

class _DaskImportWatcher(importlib.abc.MetaPathFinder):
    """Makes trioflow dask's scheduler once dask is imported (on a worker, where a task
    may import dask later; importing dask at worker start would cost seconds)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "dask":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_install(module: Any) -> None:
            exec_module(module)
            _install(module)

        loader.exec_module = exec_and_install  # type: ignore[method-assign]
        return spec


def watch_for_dask() -> None:
    """Make trioflow dask's default scheduler (as dask.distributed's ``Client`` does):
    now if dask is imported, else as soon as something imports it. Cheap: dask is not
    imported here. ``trioflow_get`` runs a graph on the running task's cluster or the
    current client's, and falls back to dask's own choice when there is neither."""
    if "dask" in sys.modules:
        _install(sys.modules["dask"])
        return
    if not any(isinstance(f, _DaskImportWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _DaskImportWatcher())


class DaskCollections:
    """dask.distributed's ``compute``/``persist`` (both clients) for dask collections."""

    _session: Session

    def compute(self, collections: Any, *, optimize_graph: bool = True, priority: int = 0,
                retries: int = 0, sync: bool = False) -> Any:
        """Start computing dask collections (or a ``trioflow.delayed`` call); a Future
        per collection (one if given one).

        With ``sync=True`` (blocking ``Client`` only) block for the values instead.
        """
        singleton = not isinstance(collections, list | tuple | set | frozenset)
        items = [collections] if singleton else list(collections)
        # trioflow's own ``Delayed`` (delayed.py, a layer above: hence the hook) becomes
        # its Future here; dask's collections below; anything else passes through
        memo: dict[int, Any] = {}
        items = [c.__trioflow_submit__(self, memo)
                 if callable(getattr(type(c), "__trioflow_submit__", None)) else c
                 for c in items]
        futures = compute(self._session, items[0] if singleton else items, optimize_graph,
                          priority, retries)
        if sync:
            gather = getattr(self, "gather")  # noqa: B009 - the client's own gather
            return gather(futures)
        return futures

    def persist(self, collections: Any, *, optimize_graph: bool = True, priority: int = 0,
                retries: int = 0) -> Any:
        """Start computing dask collections; the same collections, whose graphs are now
        the futures of their results (``x.compute()`` later only gathers)."""
        return persist(self._session, collections, optimize_graph, priority, retries)


class DaskScheduler(DaskCollections):
    """The blocking client is a dask scheduler: ``dask.compute(x, scheduler=client.get)``
    (or ``scheduler=client``)."""

    #: dask checks it before using a client as its scheduler: this one blocks
    asynchronous = False

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """dask's scheduler protocol: the values of ``keys`` of graph ``dsk``."""
        return get(self._session, dsk, keys, **kwargs)
