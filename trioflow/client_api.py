"""What both clients share: the calls that never wait (``submit``, ``map``, ``cancel``),
``id``, ``dashboard_link`` and ``repr``. ``AsyncClient`` and ``Client`` (``client.py``)
add the waiting, each in its own style."""

from __future__ import annotations

import html
import itertools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

from .engine.futures import Future
from .engine.nested import by_session
from .engine.session import Session
from .task_options import take_dask_options

T = TypeVar("T")


class ClientAPI:
    """What every client can do without waiting."""

    _session: Session

    @property
    def closed(self) -> bool:
        s = getattr(self, "_session", None)
        return s is None or s.closed is not None

    @overload
    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any, key: str | None = None,
               pure: bool = False, retries: int = 0, workers: Iterable[str] | None = None,
               priority: int = 0, run_once: bool = False,
               resources: Mapping[str, float] | None = None, **kwargs: Any) -> Future[T]: ...

    @overload
    def submit(self, fn: Callable[..., T], *args: Any, key: str | None = None,
               pure: bool = False, retries: int = 0, workers: Iterable[str] | None = None,
               priority: int = 0, run_once: bool = False,
               resources: Mapping[str, float] | None = None, **kwargs: Any) -> Future[T]: ...

    def submit(self, fn: Callable[..., Any], *args: Any, key: str | None = None,
               pure: bool = False, retries: int = 0, workers: Iterable[str] | None = None,
               priority: int = 0, run_once: bool = False,
               resources: Mapping[str, float] | None = None, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on the cluster; return its Future at once.

        Args:
            key: the task's key (default: the function name and a unique suffix).
            pure: name the task by a hash of function and arguments, so identical
                calls share one result (off by default: every call runs).
            retries: re-run this many times if the task raises.
            workers: names of the workers allowed to run it.
            priority: higher runs earlier among ready tasks.
            run_once: never re-run after a worker dies; fail with KilledWorker instead.
            resources: abstract resources it needs, like ``{"GPU": 1}``: it runs only on
                a worker that has them free, and holds them while it holds its slot.

        Futures among the arguments (also inside lists, tuples, sets and dicts) are
        dependencies: the task runs once they are done and receives their values.

        Raises:
            SerializationError: ``fn`` or an argument cannot be pickled (the message
                says which part and where).
        """
        take_dask_options(kwargs, "submit", workers)
        return self._session.submit(fn, args, kwargs, key=key, pure=pure, retries=retries,
                                    workers=workers, priority=priority, run_once=run_once,
                                    resources=resources)

    @overload
    def map(self, fn: Callable[..., Awaitable[T]], *iterables: Iterable[Any],
            key: str | list[str] | None = None, pure: bool = False, retries: int = 0,
            workers: Iterable[str] | None = None, priority: int = 0, run_once: bool = False,
            resources: Mapping[str, float] | None = None, **kwargs: Any) -> list[Future[T]]: ...

    @overload
    def map(self, fn: Callable[..., T], *iterables: Iterable[Any],
            key: str | list[str] | None = None, pure: bool = False, retries: int = 0,
            workers: Iterable[str] | None = None, priority: int = 0, run_once: bool = False,
            resources: Mapping[str, float] | None = None, **kwargs: Any) -> list[Future[T]]: ...

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            key: str | list[str] | None = None, pure: bool = False, retries: int = 0,
            workers: Iterable[str] | None = None, priority: int = 0, run_once: bool = False,
            resources: Mapping[str, float] | None = None, **kwargs: Any) -> list[Future[Any]]:
        """``submit`` once per element of the zipped iterables; a list of Futures."""
        take_dask_options(kwargs, "map", workers)
        keys: Iterable[str | None]
        if isinstance(key, list):
            lists = [list(it) for it in iterables]
            iterables = tuple(lists)
            n = min((len(items) for items in lists), default=0)
            if len(key) != n:
                raise ValueError(f"map() got {len(key)} keys for {n} items: give one key "
                                 "per item, or one string to use as a prefix")
            keys = key
        elif isinstance(key, str):
            keys = (f"{key}-{i}" for i in itertools.count())
        else:
            keys = itertools.repeat(None)
        workers = list(workers) if workers is not None else None
        submit = self._session.submit
        same_call: dict[int, Future[Any]] = {}  # a large argument to all: uploaded once
        return [
            submit(fn, args, kwargs, key=k, pure=pure, retries=retries, workers=workers,
                   priority=priority, run_once=run_once, resources=resources,
                   _same_call=same_call)
            for args, k in zip(zip(*iterables), keys)
        ]

    def cancel(self, futures: Future[Any] | Iterable[Future[Any]],
               reason: str = "cancelled", *, force: bool = True, msg: str | None = None,
               asynchronous: bool | None = None) -> None:
        """Cancel tasks: queued ones never run; their futures raise CancelledError.

        ``msg`` (dask's name) is the reason the futures' ``CancelledError`` gives.
        ``force`` is accepted for dask's sake and changes nothing: a finished future is
        always cancelled for every client holding it (dask's ``force=True``).
        """
        if msg is not None:
            reason = msg
        fs = [futures] if isinstance(futures, Future) else list(futures)
        for session, group in by_session(fs):
            session.cancel([f._state for f in group], reason)

    @property
    def id(self) -> str:
        """This client's id, as the scheduler knows it (in ``status`` and ``why``)."""
        return self._session.peer_id

    @property
    def dashboard_link(self) -> str:
        """The scheduler's live dashboard, to open in a browser ("" if it has none).

        It holds the cluster token when there is one: share it as you would the token.
        """
        s = getattr(self, "_session", None)
        return s.dashboard_link if s is not None else ""

    @property
    def futures(self) -> dict[str, Any]:
        """The keys this client holds futures for, each with its state (a snapshot, as
        dask's ``client.futures``): ``key in client.futures``, ``len(...)``."""
        s = getattr(self, "_session", None)
        if s is None:
            return {}
        with s.lock:
            return dict(s.keys)

    def _repr_html_(self) -> str:
        """The client in a notebook: where it is connected, its workers, dashboard and
        futures (every string escaped: names and addresses come from the cluster)."""
        s = getattr(self, "_session", None)
        rows = [("state", "closed" if self.closed else "connected" if s else "not connected")]
        if s is not None and s.address:
            rows.append(("scheduler", s.address))
        cluster = getattr(self, "cluster", None)
        if cluster is not None:
            rows.append(("workers", str(len(cluster.workers) or len(cluster.processes))))
        rows.append(("futures", str(len(s.keys) if s else 0)))
        link = self.dashboard_link
        board = (f'<tr><th>dashboard</th><td><a href="{html.escape(link)}" target="_blank">'
                 f"{html.escape(link)}</a></td></tr>" if link else "")
        body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in rows)
        return (f"<div><strong>trioflow {html.escape(type(self).__name__)}</strong>"
                f"<table>{body}{board}</table></div>")

    def __repr__(self) -> str:
        s = getattr(self, "_session", None)
        state = "closed" if self.closed else f"connected as {s.peer_id}" if s else "not connected"
        where = f" {s.address}" if s is not None and s.address else ""
        cluster = getattr(self, "cluster", None)
        count = len(cluster.workers) or len(cluster.processes) if cluster is not None else 0
        workers = f", {_plural(count, 'worker')}" if cluster is not None else ""
        board = f", dashboard {self.dashboard_link}" if self.dashboard_link else ""
        return (f"<{type(self).__name__}{where} {state}{workers}{board}, "
                f"{_plural(len(s.keys) if s else 0, 'future')}>")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"




def worker_count(n_workers: int, n: int | None) -> int:
    """``wait_for_workers``'s count: dask's ``n_workers``, or trioflow's ``n``."""
    count = n_workers if n is None else n
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"wait_for_workers needs a number of workers >= 0, got {count!r}")
    return count
