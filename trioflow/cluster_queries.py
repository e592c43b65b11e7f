"""dask's cluster-wide client calls: ``nthreads``, ``scheduler_info``, ``who_has``,
``has_what``, ``run``, ``upload_file``, ``get_executor`` and the refused
``run_on_scheduler``. Mixed into both clients: ``Client`` blocks, ``AsyncClient``
awaits (``await client.nthreads()``).

Workers are named by their names (``worker-0``, or ``--name``), the names ``workers=``
takes, where dask uses addresses.

``run`` is a task per worker, restricted to it (``workers=[name]``): unlike dask's,
which runs beside the tasks, it takes one of the worker's slots while it runs, and
waits for one like any task. ``upload_file`` is such a ``run``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, overload

import trio

from .config import CLIENT_CALL_TIMEOUT
from .engine.futures import Future, fire_and_forget
from .engine.keys import error_to_exception
from .engine.session import Session
from .engine.waiting import wait, wait_async
from .executor import ClusterExecutor
from .versions import PACKAGES, mismatches, versions

_NO_SCHEDULER_CODE = (
    "run_on_scheduler: trioflow's scheduler never runs or unpickles user code (that "
    "is what keeps it safe and responsive); run the function in a task "
    "(client.submit) or on every worker (client.run) instead")


def _infos(reply_workers: list[Any]) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in reply_workers}


def _scheduler_info(session: Session, workers: list[Any]) -> dict[str, Any]:
    infos = _infos(workers)
    return {
        "type": "Scheduler",
        "id": session.scheduler_id,
        "address": session.address,  # (as this client reached it)
        "n_workers": len(infos),
        "total_threads": sum(w["nthreads"] for w in infos.values()),
        "workers": infos,
    }


def _has_what(workers: list[Any]) -> dict[str, list[str]]:
    return {w["name"]: list(w.get("keys", ())) for w in workers}


def _who_has(workers: list[Any], futures: Any) -> dict[str, list[str]]:
    holders: dict[str, list[str]] = {}
    for w in workers:
        for key in w.get("keys", ()):
            holders.setdefault(key, []).append(w["name"])
    if futures is None:
        return holders
    fs = [futures] if isinstance(futures, Future) else list(futures)
    return {f.key: holders.get(f.key, []) for f in fs}


def _processing(workers: list[Any], names: Iterable[str] | None) -> dict[str, list[str]]:
    wanted = None if names is None else set([names] if isinstance(names, str) else names)
    return {w["name"]: list(w.get("processing_keys", ())) for w in workers
            if wanted is None or w["name"] in wanted}


def _versions_args(packages: Iterable[str] | None) -> tuple[str, ...]:
    extra = [packages] if isinstance(packages, str) else list(packages or ())
    return PACKAGES + tuple(n for n in extra if n not in PACKAGES)


def _versions_answer(session: Session, workers: dict[str, Any], wanted: tuple[str, ...],
                     check: bool) -> dict[str, Any]:
    """``get_versions``'s answer; with ``check``, raises ValueError on a mismatch."""
    found = {"scheduler": session.scheduler_versions, "workers": workers,
             "client": versions(wanted, imports=True)}
    problems = mismatches(found) if check else []
    if problems:
        raise ValueError("get_versions: mismatched versions (install the same versions "
                         "everywhere):\n  " + "\n  ".join(problems))
    return found


def _install_file(name: str, data: bytes) -> str:
    """On a worker: save an uploaded file where imports find it, and (re)load it."""
    folder = pathlib.Path(tempfile.gettempdir()) / f"trioflow-uploads-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    entry = str(path) if path.suffix in (".zip", ".egg", ".whl") else str(folder)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    importlib.invalidate_caches()
    if path.suffix == ".py":
        module = sys.modules.get(path.stem)
        if module is not None:
            importlib.reload(module)
        else:
            importlib.import_module(path.stem)
    return str(path)


def _run_futures(session: Session, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any], names: Iterable[str]) -> dict[str, Future[Any]]:
    # ahead of queued work, as dask's run does not queue behind tasks at all
    return {name: session.submit(fn, args, kwargs, workers=[name], priority=1_000_000)
            for name in names}


def _run_options(nanny: bool, on_error: str) -> None:
    """Check dask's ``run`` options that trioflow has an answer for.

    Raises:
        ValueError: ``on_error`` is not "raise", "return" or "ignore".
        NotImplementedError: ``nanny=True`` (a nanny runs no user code here).
    """
    if on_error not in ("raise", "return", "ignore"):
        raise ValueError(f"run: on_error must be 'raise', 'return' or 'ignore', got {on_error!r}")
    if nanny:
        raise NotImplementedError(
            "run(nanny=True): a trioflow nanny runs no user code; leave nanny out to run "
            "the function on the workers themselves")


def _run_answer(futures: dict[str, Future[Any]], values: list[Any],
                on_error: str) -> dict[str, Any]:
    """``run``'s answer from its done futures and the values of those that finished
    (gathered in order): by worker name, a failure raised ("raise"), given as the
    exception ("return") or left out ("ignore")."""
    got = iter(values)
    out: dict[str, Any] = {}
    for name, fut in futures.items():
        if fut.status == "finished":
            out[name] = next(got)
            continue
        error = error_to_exception(fut._state.error)
        if on_error == "raise":
            raise error
        if on_error == "return":
            out[name] = error
    return out


def _replicate_args(futures: Any, n: int | None, workers: Iterable[str] | None
                    ) -> tuple[list[Future[Any]], int, list[str]]:
    """Check ``replicate``'s arguments: the futures, ``n`` (0: all), worker names.

    Raises:
        TypeError: something other than futures, or worker names not strings.
        ValueError: ``n`` below 1.
    """
    fs = [futures] if isinstance(futures, Future) else list(futures)
    bad = [f for f in fs if not isinstance(f, Future)]
    if bad:
        raise TypeError(f"replicate takes futures (from submit or scatter), not "
                        f"{type(bad[0]).__name__}")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"replicate: n={n!r}; give the number of workers (at least 1) "
                         f"that should hold each result, or None for every worker")
    if isinstance(workers, str):
        workers = [workers]
    names = list(workers) if workers is not None else []
    if any(not isinstance(w, str) for w in names):
        raise TypeError("replicate: workers= takes worker names (see client.nthreads())")
    return fs, n or 0, names


def _failed(fs: list[Future[Any]], not_done: Any, timeout: float) -> None:
    if not_done:
        raise TimeoutError(f"replicate: {len(not_done)} futures still pending after "
                           f"{timeout}s")
    bad = [f.key for f in fs if f.status != "finished"]
    if bad:
        raise ValueError(f"replicate: {bad[:3]} did not finish (failed or cancelled): "
                         f"only results can be copied")


async def _restart(session: Session, timeout: float, wait_for_workers: bool = True) -> None:
    """``Client.restart`` on the client's loop: the scheduler's part, then wait for as
    many new workers as were restarted (they join as new peers).

    Cancellation: the restart goes on; only the waiting stops.
    """
    with trio.fail_after(timeout):
        old = set(await session.restart())
        while wait_for_workers:
            workers = (await session.status()).workers
            back = sum(1 for w in workers if w["id"] not in old)
            if back >= len(old):
                return
            await trio.sleep(0.05)  # (no "worker joined" event for clients to wait on)


def _retry_keys(futures: Any) -> list[str]:
    """The keys ``retry`` asks for.

    Raises:
        TypeError: something other than futures.
    """
    fs = [futures] if isinstance(futures, Future) else list(futures)
    bad = [f for f in fs if not isinstance(f, Future)]
    if bad:
        raise TypeError(f"retry takes futures, not {type(bad[0]).__name__}")
    return [f.key for f in fs]


def _restart_timed_out(timeout: float) -> TimeoutError:
    return TimeoutError(f"restart: the workers were not all back after {timeout}s (their "
                        f"tasks were cancelled and they were restarted; check the "
                        f"workers' logs)")


class SyncClusterQueries:
    """The blocking client's cluster calls."""

    _session: Session

    def _status_workers(self, with_keys: bool = False) -> list[Any]:
        reply = self._on_loop(lambda: self._session.status(with_keys), 30.0)  # type: ignore[attr-defined]
        return list(reply.workers)

    def nthreads(self) -> dict[str, int]:
        """Slots per worker, by worker name."""
        return {w["name"]: w["nthreads"] for w in self._status_workers()}

    def ncores(self) -> dict[str, int]:
        """dask's older name of ``nthreads``."""
        return self.nthreads()

    def scheduler_info(self) -> dict[str, Any]:
        """The scheduler's id and its workers (name, id, slots, busy, results held)."""
        return _scheduler_info(self._session, self._status_workers())

    def processing(self, workers: Iterable[str] | None = None) -> dict[str, list[str]]:
        """The keys each worker has to run (queued there, running or seceded), by
        worker name; ``workers``: only these."""
        return _processing(self._status_workers(with_keys=True), workers)

    def has_what(self) -> dict[str, list[str]]:
        """The keys of the results each worker holds, by worker name."""
        return _has_what(self._status_workers(with_keys=True))

    def who_has(self, futures: Any = None) -> dict[str, list[str]]:
        """The workers holding each future's result (every held key without futures).
        Small results kept by the scheduler itself are held by no worker."""
        return _who_has(self._status_workers(with_keys=True), futures)

    @overload
    def run(self, fn: Callable[..., Any], *args: Any, workers: Iterable[str] | None = None,
            wait: Literal[True] = True, nanny: bool = False, on_error: str = "raise",
            **kwargs: Any) -> dict[str, Any]: ...

    @overload
    def run(self, fn: Callable[..., Any], *args: Any, workers: Iterable[str] | None = None,
            wait: Literal[False], nanny: bool = False, on_error: str = "raise",
            **kwargs: Any) -> None: ...

    def run(self, fn: Callable[..., Any], *args: Any, workers: Iterable[str] | None = None,
            wait: bool = True, nanny: bool = False, on_error: str = "raise",
            **kwargs: Any) -> dict[str, Any] | None:
        """``fn(*args, **kwargs)`` once on every worker (or on ``workers``); the results
        by worker name. Each call is a task restricted to its worker.

        As in dask: ``wait=False`` returns None at once and lets the calls run;
        ``on_error="return"`` gives a failed call's exception as its result,
        ``"ignore"`` leaves it out, ``"raise"`` (the default) raises the first.
        """
        _run_options(nanny, on_error)
        names = list(workers) if workers is not None else list(self.nthreads())
        futures = _run_futures(self._session, fn, args, kwargs, names)
        if not wait:
            fire_and_forget(list(futures.values()))
            return None
        self._session.wait_sync([f._state for f in futures.values()])
        values = self.gather(list(futures.values()), errors="skip")  # type: ignore[attr-defined]
        return _run_answer(futures, values, on_error)

    def upload_file(self, path: str | os.PathLike[str]) -> dict[str, str]:
        """Send a ``.py`` (imported, or reloaded) or ``.zip``/``.egg`` file to every
        worker, where tasks can import it; where it was saved, by worker name."""
        p = pathlib.Path(path)
        return self.run(_install_file, p.name, p.read_bytes())

    def run_on_scheduler(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Refused: the scheduler never runs user code.

        Raises:
            RuntimeError: always; says what to use instead.
        """
        raise RuntimeError(_NO_SCHEDULER_CODE)

    def get_versions(self, check: bool = False,
                     packages: Iterable[str] | None = None) -> dict[str, Any]:
        """The host and package versions of the scheduler, each worker (by name) and
        this client, as dask's: ``{"scheduler": ..., "workers": {...}, "client": ...}``,
        each ``{"host": {...}, "packages": {...}}``. ``packages`` names more to report
        (the scheduler reports only what it has imported). Asking a worker is a
        ``run``: it waits for a free slot there.

        Raises:
            ValueError: with ``check``, when python, trioflow, cloudpickle or msgpack
                differ between this client and a worker (or trioflow with the scheduler).
        """
        wanted = _versions_args(packages)
        return _versions_answer(self._session, self.run(versions, wanted, True), wanted, check)

    def retire_workers(self, workers: Iterable[str], timeout: float = 60.0) -> list[str]:
        """Stop these workers of this client's local cluster (worker processes): each
        is sent SIGTERM, drains (queued runs go back, running ones finish) and exits;
        returns once the scheduler no longer lists them. Unlike dask, results they
        held are not moved first: the scheduler recomputes them when needed (scattered
        data is uploaded again by its client).

        Raises:
            RuntimeError: the cluster is not a local one with worker processes (stop a
                remote worker with SIGTERM: it drains the same way).
            ValueError: an unknown worker name.
            TimeoutError: they are still listed after ``timeout`` seconds.
        """
        procs = list(getattr(getattr(self, "cluster", None), "processes", None) or ())
        if not procs:
            raise RuntimeError(
                "retire_workers needs a local cluster of worker processes started for this "
                "client (Client(), or Client(LocalCluster(...))); stop a remote worker "
                "with SIGTERM, which makes it drain and exit")
        by_name = {f"worker-{i}": proc for i, proc in enumerate(procs)}
        names = list(workers)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"no local worker process named {unknown}; these are "
                             f"{sorted(by_name)}")
        for n in names:
            if by_name[n].returncode is None:
                by_name[n].terminate()  # SIGTERM: the worker drains, then exits
        deadline = time.monotonic() + timeout
        while any(w["name"] in names for w in self._status_workers()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers {names} still connected after {timeout}s")
            time.sleep(0.05)
        return names

    def retry(self, futures: Any) -> None:
        """Run failed futures' tasks again, with the failed tasks they depend on (as
        dask's ``retry``); their futures are pending again when this returns. Futures
        that did not fail are left alone.

        Raises:
            ValueError: some cannot run again (cancelled, an input released, ...); the
                others run again anyway.
        """
        keys = _retry_keys(futures)
        services = self._session.services
        self._on_loop(lambda: services.retry(keys), CLIENT_CALL_TIMEOUT)  # type: ignore[attr-defined]

    def replicate(self, futures: Any, n: int | None = None,
                  workers: Iterable[str] | None = None, timeout: float = 60.0,
                  branching_factor: int = 2) -> None:
        """Copy each future's result to ``n`` workers (None: every worker), among
        ``workers`` (names; None: all); waits for the futures, then for the copies
        (fetched worker to worker). As in dask, a smaller ``n`` than the copies there are
        frees the extras. Small results the scheduler keeps need no copies.
        ``branching_factor`` (dask's) is accepted and changes nothing: every copy is
        fetched from a worker that held the result when the call began.

        Raises:
            TypeError, ValueError: bad arguments, an unknown worker, a future that failed.
            WorkerLost: a copy could not be made (its worker or the holder was lost).
            TimeoutError: not done within ``timeout`` seconds.
        """
        fs, count, names = _replicate_args(futures, n, workers)
        if not fs:
            return
        _failed(fs, wait(fs, timeout=timeout).not_done, timeout)
        keys = [f.key for f in fs]
        self._on_loop(lambda: self._session.replicate(keys, count, names), timeout)  # type: ignore[attr-defined]

    def restart(self, timeout: float = 60.0, wait_for_workers: bool = True) -> None:
        """As dask: cancel every task of every client (their futures raise
        ``CancelledError``), forget all results, and restart every worker process;
        returns once as many workers are connected again (``wait_for_workers=False``:
        once they are told to restart). Only workers run by a nanny can be restarted
        (local clusters of processes, ``trioflow-worker --nworkers``).

        Raises:
            RuntimeError: some worker cannot be restarted (no nanny); nothing was done.
            TimeoutError: the workers were not all back within ``timeout`` seconds.
        """
        try:
            self._on_loop(lambda: _restart(self._session, timeout, wait_for_workers),  # type: ignore[attr-defined]
                          timeout + 5.0)
        except trio.TooSlowError:
            raise _restart_timed_out(timeout) from None

    def get_executor(self, **options: Any) -> ClusterExecutor:
        """A ``concurrent.futures.Executor`` submitting to this client; ``options`` are
        ``submit`` options for every call."""
        return ClusterExecutor(self, **options)  # type: ignore[arg-type]


class AsyncClusterQueries:
    """The async client's cluster calls (each awaited)."""

    _session: Session

    async def _status_workers(self, with_keys: bool = False) -> list[Any]:
        background = getattr(self, "_background", None)
        if background is not None:  # under asyncio: the blocking client's call
            return await asyncio.get_running_loop().run_in_executor(
                None, background._status_workers, with_keys)
        return list((await self._session.status(with_keys)).workers)

    async def nthreads(self) -> dict[str, int]:
        """Slots per worker, by worker name."""
        return {w["name"]: w["nthreads"] for w in await self._status_workers()}

    async def ncores(self) -> dict[str, int]:
        """dask's older name of ``nthreads``."""
        return await self.nthreads()

    async def scheduler_info(self) -> dict[str, Any]:
        """The scheduler's id and its workers (name, id, slots, busy, results held)."""
        return _scheduler_info(self._session, await self._status_workers())

    async def processing(self, workers: Iterable[str] | None = None) -> dict[str, list[str]]:
        """The keys each worker has to run, by worker name (see the blocking client's)."""
        return _processing(await self._status_workers(with_keys=True), workers)

    async def has_what(self) -> dict[str, list[str]]:
        """The keys of the results each worker holds, by worker name."""
        return _has_what(await self._status_workers(with_keys=True))

    async def who_has(self, futures: Any = None) -> dict[str, list[str]]:
        """The workers holding each future's result (every held key without futures)."""
        return _who_has(await self._status_workers(with_keys=True), futures)

    @overload
    async def run(self, fn: Callable[..., Any], *args: Any,
                  workers: Iterable[str] | None = None, wait: Literal[True] = True,
                  nanny: bool = False, on_error: str = "raise",
                  **kwargs: Any) -> dict[str, Any]: ...

    @overload
    async def run(self, fn: Callable[..., Any], *args: Any,
                  workers: Iterable[str] | None = None, wait: Literal[False],
                  nanny: bool = False, on_error: str = "raise", **kwargs: Any) -> None: ...

    async def run(self, fn: Callable[..., Any], *args: Any,
                  workers: Iterable[str] | None = None, wait: bool = True,
                  nanny: bool = False, on_error: str = "raise",
                  **kwargs: Any) -> dict[str, Any] | None:
        """``fn(*args, **kwargs)`` once on every worker (or on ``workers``); the results
        by worker name (``wait`` and ``on_error`` as for the blocking client's ``run``)."""
        _run_options(nanny, on_error)
        names = list(workers) if workers is not None else list(await self.nthreads())
        futures = _run_futures(self._session, fn, args, kwargs, names)
        if not wait:
            fire_and_forget(list(futures.values()))
            return None
        await self._session.wait_async([f._state for f in futures.values()])
        values = await self.gather(list(futures.values()), errors="skip")  # type: ignore[attr-defined]
        return _run_answer(futures, values, on_error)

    async def upload_file(self, path: str | os.PathLike[str]) -> dict[str, str]:
        """Send a ``.py`` or ``.zip``/``.egg`` file to every worker (see the blocking
        client's ``upload_file``)."""
        p = pathlib.Path(path)
        return await self.run(_install_file, p.name, p.read_bytes())

    def run_on_scheduler(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Refused: the scheduler never runs user code.

        Raises:
            RuntimeError: always; says what to use instead.
        """
        raise RuntimeError(_NO_SCHEDULER_CODE)

    async def get_versions(self, check: bool = False,
                           packages: Iterable[str] | None = None) -> dict[str, Any]:
        """See the blocking client's ``get_versions``."""
        wanted = _versions_args(packages)
        return _versions_answer(self._session, await self.run(versions, wanted, True),
                                wanted, check)

    async def retry(self, futures: Any) -> None:
        """See the blocking client's ``retry``."""
        keys = _retry_keys(futures)
        services = self._session.services
        await self._on_trio(lambda: services.retry(keys))  # type: ignore[attr-defined]

    async def replicate(self, futures: Any, n: int | None = None,
                        workers: Iterable[str] | None = None, timeout: float = 60.0,
                        branching_factor: int = 2) -> None:
        """Copy each future's result to ``n`` workers (see the blocking client's
        ``replicate``)."""
        fs, count, names = _replicate_args(futures, n, workers)
        if not fs:
            return
        _failed(fs, (await wait_async(fs, timeout=timeout)).not_done, timeout)
        keys = [f.key for f in fs]
        background = getattr(self, "_background", None)
        if background is not None:  # under asyncio: the blocking client's call
            return await asyncio.get_running_loop().run_in_executor(
                None, background._on_loop, lambda: self._session.replicate(keys, count, names),
                timeout)
        with trio.fail_after(timeout):
            await self._session.replicate(keys, count, names)

    async def restart(self, timeout: float = 60.0, wait_for_workers: bool = True) -> None:
        """Cancel every task and restart every worker (see the blocking client's
        ``restart``)."""
        background = getattr(self, "_background", None)
        try:
            if background is not None:  # under asyncio: the blocking client's call
                return await asyncio.get_running_loop().run_in_executor(
                    None, background._on_loop,
                    lambda: _restart(self._session, timeout, wait_for_workers), timeout + 5.0)
            await _restart(self._session, timeout, wait_for_workers)
        except trio.TooSlowError:
            raise _restart_timed_out(timeout) from None

    def get_executor(self, **options: Any) -> ClusterExecutor:
        """A ``concurrent.futures.Executor`` submitting to this client."""
        return ClusterExecutor(self, **options)  # type: ignore[arg-type]
