"""``trioflow.run``: run a program with a cluster, like ``trio.run``."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import outcome
import trio

from .client import Client, open_client
from .engine.context import push_default, remove_default

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


def run(main: Callable[..., Any], *args: Any, workers: int | None = None,
        threads_per_worker: int | None = None, processes: bool = True,
        address: str | None = None, **options: Any) -> Any:
    """Run ``main(*args)`` with a cluster, like ``trio.run``; return its result.

    Starts a scheduler and worker processes (or connects to ``address``), then runs
    ``main``: an ``async def`` main runs on the event loop and uses
    ``trioflow.get_client()`` (an AsyncClient); a plain function runs in a thread and
    gets a blocking Client. Everything is torn down when main returns or raises, and on
    Ctrl-C.

    Args:
        workers, threads_per_worker: the local cluster's shape (default: fill the cores).
        processes: workers as subprocesses (default) or as tasks in this process.
        address: use this running scheduler instead of starting one.
        **options: ``token``, ``auto_secede``, ``max_parked_threads``, ``inline_limit``,
            ``allowed_failures``, ``no_workers_timeout``, ``restart_policy``.
    """
    try:
        result = trio.run(partial(_run, main, args, workers, threads_per_worker, processes,
                                  address, options))
    except BaseExceptionGroup as group:
        # Ctrl-C lands inside the cluster's nurseries, which wrap it: give the user the
        # plain KeyboardInterrupt their ``except KeyboardInterrupt`` expects
        if group.split(KeyboardInterrupt)[0] is not None:
            raise KeyboardInterrupt from None
        raise
    return result.unwrap()  # main's own exception, not wrapped in an ExceptionGroup


async def _run(main: Callable[..., Any], args: tuple[Any, ...], workers: int | None,
               threads_per_worker: int | None, processes: bool, address: str | None,
               options: dict[str, Any]) -> outcome.Outcome[Any]:
    async with open_client(address, workers=workers, threads_per_worker=threads_per_worker,
                            processes=processes, **options) as (client, _cluster):
        if inspect.iscoroutinefunction(main):
            return await _capture(main(*args))
        sync_client = Client._in_task(client._session)
        push_default(sync_client, client._session)
        try:
            return await _capture(trio.to_thread.run_sync(partial(main, *args),
                                                          abandon_on_cancel=True))
        finally:
            remove_default(sync_client)


async def _capture(awaitable: Awaitable[Any]) -> outcome.Outcome[Any]:
    """main's result or exception, carried out of the nurseries unwrapped (Cancelled
    still propagates, so Ctrl-C and teardown work as usual)."""
    try:
        return outcome.Value(await awaitable)
    except (Exception, SystemExit) as exc:
        return outcome.Error(exc)
