"""Run task programs for real: generic task functions and an in-process cluster runner.

:func:`run_sync_program` and :func:`run_async_program` are ordinary trioflow tasks that
interpret a :class:`~.program.Program`: they submit the children (each with the
function matching its kind), wait on them the way the program says — with
``get_client`` and no secede, ``secede()``/``rejoin()``, ``worker_client()``, or by
awaiting in an ``async def`` — and return the tree's size or raise
:class:`~.program.ProgramFailure`. They are module-level, so cloudpickle sends them by
reference.

:func:`run_program` runs one program on a cluster and reports its :class:`Outcome`, the
same record the simulator produces, so the two can be compared
(``Outcome.summary()``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import trio

from .. import in_task as tasks
from ..client import AsyncClient, Client
from ..errors import DeadlockError
from ..primitives import Lock, Queue
from .program import (
    DEADLOCK_TYPE,
    FAILURE_TYPE,
    ClusterShape,
    Outcome,
    Program,
    ProgramFailure,
    Wait,
)

__all__ = ["outcome_of", "run_async_program", "run_on_local_cluster", "run_program",
           "run_sync_program", "task_function"]


def task_function(program: Program) -> Any:
    """The interpreter function that runs ``program`` (sync or async)."""
    return run_async_program if program.is_async else run_sync_program


def _submit_children(client: Any, program: Program, path: str) -> list[Any]:
    return [client.submit(task_function(child), child, f"{path}.{i}")
            for i, child in enumerate(program.children)]


def _finish(program: Program, path: str, values: list[int]) -> int:
    if program.fail:
        raise ProgramFailure(path)
    return 1 + sum(values)


@contextlib.contextmanager
def _uses_sync(program: Program) -> Iterator[None]:
    """What ``program.uses`` does first: hold the lock for the body, or put, or get."""
    if program.uses == "lock":
        with Lock("L"):
            yield
        return
    if program.uses == "put":
        Queue("Q").put(1)
    elif program.uses == "get":
        Queue("Q").get()
    yield


@contextlib.asynccontextmanager
async def _uses_async(program: Program) -> AsyncIterator[None]:
    if program.uses == "lock":
        async with Lock("L"):
            yield
        return
    if program.uses == "put":
        await Queue("Q").put_async(1)
    elif program.uses == "get":
        await Queue("Q").get_async()
    yield


def run_sync_program(program: Program, path: str) -> int:
    """A sync task running ``program`` (its wait style is not ``Wait.ASYNC``)."""
    with _uses_sync(program):
        return _run_sync_body(program, path)


def _run_sync_body(program: Program, path: str) -> int:
    values: list[int] = []
    if program.children:
        if program.wait is Wait.WORKER_CLIENT:
            with tasks.worker_client() as client:
                assert isinstance(client, Client)  # a sync task gets the blocking one
                values = client.gather(_submit_children(client, program, path))
        else:
            client = tasks.get_client()
            assert isinstance(client, Client)
            futures = _submit_children(client, program, path)
            if program.wait is Wait.SECEDE:
                tasks.secede()
                values = client.gather(futures)
                tasks.rejoin()
            else:  # Wait.NONE: hold the slot while waiting
                values = client.gather(futures)
    return _finish(program, path, values)


async def run_async_program(program: Program, path: str) -> int:
    """An ``async def`` task running ``program``: awaiting holds no slot."""
    async with _uses_async(program):
        return await _run_async_body(program, path)


async def _run_async_body(program: Program, path: str) -> int:
    values: list[int] = []
    if program.children:
        client = tasks.get_client()
        assert isinstance(client, AsyncClient)  # an async task gets the trio-native one
        values = await client.gather(_submit_children(client, program, path))
    return _finish(program, path, values)


def outcome_of(exc: BaseException | None, value: Any = None) -> Outcome:
    """The :class:`Outcome` of a root future that returned ``value`` or raised ``exc``."""
    if exc is None:
        return Outcome(value=value)
    if isinstance(exc, DeadlockError):
        return Outcome(error=DEADLOCK_TYPE, text=str(exc))
    if isinstance(exc, ProgramFailure):
        return Outcome(error=FAILURE_TYPE, text=exc.path)
    return Outcome(error=f"{type(exc).__module__}.{type(exc).__qualname__}", text=str(exc))


async def run_program(client: Any, program: Program, *, timeout: float = 30.0) -> Outcome:
    """Submit ``program`` as one root with ``client`` (an AsyncClient) and await it.

    Raises:
        trio.TooSlowError: no answer within ``timeout`` seconds (a hang is a failure).
    """
    with trio.fail_after(timeout):
        future = client.submit(task_function(program), program, "0")
        try:
            value = await future
        except Exception as exc:
            return outcome_of(exc)
        return outcome_of(None, value)


async def run_on_local_cluster(programs: list[Program], shape: ClusterShape, *,
                               timeout: float = 30.0, **options: Any) -> list[Outcome]:
    """Run each program, one after the other, on a fresh in-process cluster of ``shape``.

    The cluster is idle between programs (every worker waits until it has no run), so
    one program's leftovers cannot change the next one's outcome.

    Args:
        options: passed to ``trioflow.open_local_cluster`` (e.g. ``auto_secede``).
    """
    from ..client import AsyncClient
    from ..cluster import open_local_cluster

    outcomes = []
    with trio.fail_after(timeout * max(1, len(programs)) + 30):
        async with open_local_cluster(shape.workers, shape.slots, processes=False,
                                      **options) as cluster:
            async with AsyncClient(cluster.address) as client:
                for program in programs:
                    outcomes.append(await run_program(client, program, timeout=timeout))
                    for node in cluster.workers:
                        await node.wait_idle()
    return outcomes

