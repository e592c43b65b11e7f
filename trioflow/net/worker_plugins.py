"""A worker's plugins (``Client.register_plugin``, dask's ``WorkerPlugin``): set up in a
thread when the scheduler sends one, torn down when it is removed or the worker stops.

No run starts while a setup is under way: ``gate_sync``/``gate_async`` hold a run that
got its slot until every pending setup has ended (as a memory pause does), so a task
always finds the plugins the scheduler had sent before it. A setup that raises is
reported (``PluginInstalled.error``) and does not stop the worker; its plugin is not
kept. Setups and teardowns run one at a time, in the order they came.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import attrs
import trio

from .. import protocol as p
from .. import serialize

logger = logging.getLogger(__name__)


@attrs.frozen
class PluginWorker:
    """The worker as a plugin's ``setup(worker)`` and ``teardown(worker)`` see it (a
    description, as ``get_worker()`` gives tasks, not the worker's internals).

    Attributes:
        name: the worker's name. id: its id at the scheduler. nthreads: its slots.
        address: where it serves results.
    """

    name: str
    id: str
    nthreads: int
    address: str


class WorkerPlugins:
    """The plugins of one worker, and the gate runs pass before they start.

    Args:
        describe: the worker as plugins see it (read when a setup or teardown runs).
    """

    def __init__(self, describe: Callable[[], PluginWorker]) -> None:
        self._describe = describe
        self.installed: dict[str, Any] = {}
        self._pending = 0
        self._cond = threading.Condition()
        self._settled = trio.Event()
        self._settled.set()
        #: setups and teardowns still to run, in the order they were asked for
        self._ops: deque[Coroutine[Any, Any, None]] = deque()
        self._serving = False

    @property
    def pending(self) -> bool:
        """Some setup has not ended (read without the lock: the gates check again)."""
        return self._pending > 0

    def gate_sync(self) -> None:
        """Block this task thread while a setup is under way."""
        with self._cond:
            while self._pending:
                self._cond.wait()

    async def gate_async(self) -> None:
        """Wait on the loop while a setup is under way. Cancellation: stops waiting."""
        await self._settled.wait()

    def _begin(self) -> None:
        with self._cond:
            self._pending += 1
        if self._settled.is_set():
            self._settled = trio.Event()

    def _end(self) -> None:
        with self._cond:
            self._pending -= 1
            if not self._pending:
                self._cond.notify_all()
                self._settled.set()

    def install(self, nursery: trio.Nursery, msg: p.InstallPlugin,
                report: Callable[[p.PluginInstalled], None]) -> None:
        """Set up ``msg``'s plugin (replacing one of that name) in ``nursery``, after the
        operations asked for before; runs are held from now until it has ended, and
        ``report`` is called with the outcome (on the loop)."""
        self._begin()
        self._queue(nursery, self._install(msg, report))

    def remove(self, nursery: trio.Nursery, name: str) -> None:
        """Tear plugin ``name`` down and forget it (nothing if there is none), after the
        operations asked for before."""
        self._queue(nursery, self._remove(name))

    def _queue(self, nursery: trio.Nursery, op: Any) -> None:
        # one operation at a time, in the order the scheduler sent them: an unregister
        # followed by a register must not tear the new plugin down
        self._ops.append(op)
        if not self._serving:
            self._serving = True
            nursery.start_soon(self._serve_ops)

    async def _serve_ops(self) -> None:
        try:
            while self._ops:
                await self._ops.popleft()
        finally:
            self._serving = False
            for op in self._ops:  # (cancelled: what was left will not run)
                op.close()
            self._ops.clear()

    async def _install(self, msg: p.InstallPlugin,
                       report: Callable[[p.PluginInstalled], None]) -> None:
        error = ""
        try:
            old = self.installed.pop(msg.name, None)
            if old is not None:
                await self._call(old, "teardown", msg.name)
            try:
                plugin = serialize.loads_value(msg.blob)
                await self._call(plugin, "setup", msg.name, raising=True)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                logger.warning("worker plugin %r failed to set up: %s", msg.name, error)
            else:
                self.installed[msg.name] = plugin
        finally:
            self._end()
        report(p.PluginInstalled(msg.name, error))

    async def _remove(self, name: str) -> None:
        plugin = self.installed.pop(name, None)
        if plugin is not None:
            await self._call(plugin, "teardown", name)

    async def teardown_all(self) -> None:
        """The worker stops: tear every plugin down, newest first.

        Cancellation: the teardowns left are skipped (a thread that started finishes).
        """
        while self.installed:
            name, plugin = self.installed.popitem()
            await self._call(plugin, "teardown", name)

    async def _call(self, plugin: Any, method: str, name: str, raising: bool = False) -> None:
        """``plugin.<method>(worker)`` in a thread, if the plugin has that method. An
        exception is raised with ``raising``, else logged."""
        fn = getattr(plugin, method, None)
        if not callable(fn):
            return
        worker = self._describe()
        try:
            await trio.to_thread.run_sync(fn, worker)
        except Exception:
            if raising:
                raise
            logger.exception("worker plugin %r failed in %s", name, method)
