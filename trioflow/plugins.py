"""Worker plugins, as dask's: ``client.register_plugin(plugin)`` runs
``plugin.setup(worker)`` on every worker, and on each worker that joins later, before
that worker's first task; ``plugin.teardown(worker)`` runs when it is unregistered or
its worker stops. For what a worker needs in place before it runs anything: a module
imported, a connection opened, a file downloaded.

``worker`` is a ``PluginWorker`` (name, id, nthreads, address). The plugin is pickled
here (cloudpickle: a class defined in your script travels by value) and reaches the
workers through the scheduler, which never unpickles it. A setup runs in a thread of
its worker, with runs held until it ends; if it raises, ``register_plugin`` raises
``RuntimeError`` naming the workers and the error (the other workers keep the plugin,
and a new one retries the setup). Setups must not wait for tasks: runs wait for them.
"""

from __future__ import annotations

import secrets
from typing import Any

from . import protocol as p
from . import serialize
from .config import CLIENT_CALL_TIMEOUT
from .engine.session import Session
from .errors import ProtocolError
from .net.worker_plugins import PluginWorker

__all__ = ["PluginWorker", "WorkerPlugin"]


class WorkerPlugin:
    """A base for worker plugins (dask's ``WorkerPlugin``); any object with ``setup``
    and/or ``teardown`` methods taking the worker will do.

    Attributes:
        name: what it is registered as, unless ``register_plugin(name=...)`` says
            otherwise (default: the class name and a random suffix).
    """

    name: str | None = None

    def setup(self, worker: PluginWorker) -> None:
        """Runs on each worker before its first task (or now, on those running)."""

    def teardown(self, worker: PluginWorker) -> None:
        """Runs when the plugin is unregistered, or its worker stops."""


def _name_of(plugin: Any, name: str | None) -> str:
    chosen = name or getattr(plugin, "name", None)
    if chosen is None:
        chosen = f"{type(plugin).__name__}-{secrets.token_hex(4)}"
    if not isinstance(chosen, str) or not chosen:
        raise ValueError(f"a plugin name must be a non-empty string, got {chosen!r}")
    return chosen


def _check(plugin: Any) -> bytes:
    """The pickled plugin.

    Raises:
        TypeError: it has neither ``setup`` nor ``teardown``.
        SerializationError: it cannot be pickled; says where.
    """
    if not (callable(getattr(plugin, "setup", None))
            or callable(getattr(plugin, "teardown", None))):
        raise TypeError(f"a worker plugin needs a setup(worker) or teardown(worker) method; "
                        f"{type(plugin).__name__} has neither")
    return serialize.dumps_value(plugin)


def _answer(reply: p.PluginReply, name: str) -> dict[str, dict[str, str]]:
    """``register_plugin``'s answer, by worker name (dask's shape).

    Raises:
        RuntimeError: the setup failed on some workers; says where and how.
        KeyError, ValueError: as the reply's status says.
    """
    if reply.status == "missing":
        raise KeyError(reply.text)
    if reply.status == "invalid":
        raise ValueError(reply.text)
    if reply.status != "ok":
        raise ProtocolError(f"the scheduler answered a plugin request with {reply.status!r}")
    failed = [(worker, error) for worker, error in reply.results if error]
    if failed:
        lines = "; ".join(f"{worker}: {error}" for worker, error in failed)
        raise RuntimeError(f"worker plugin {name!r} failed to set up on "
                           f"{len(failed)} worker(s): {lines}")
    return {worker: {"status": "OK"} for worker, _ in reply.results}


class SyncPlugins:
    """The blocking client's plugin calls (mixed into ``Client``)."""

    _session: Session

    def _plugin(self, op: str, name: str, blob: bytes = b"",
                idempotent: bool = False) -> p.PluginReply:
        services = self._session.services
        reply: p.PluginReply = self._on_loop(  # type: ignore[attr-defined]  # (the client's)
            lambda: services.plugin(op, name, blob, idempotent), CLIENT_CALL_TIMEOUT)
        return reply

    def register_plugin(self, plugin: Any, name: str | None = None,
                        idempotent: bool = False) -> dict[str, dict[str, str]]:
        """Set ``plugin`` up on every worker, now and on each that joins later (see
        the module's docstring); returns once the workers connected now have, by
        worker name. A plugin of the same name is replaced (its teardown runs), unless
        ``idempotent``, which keeps it.

        Raises:
            RuntimeError: its setup raised on some worker.
            TypeError: not a plugin (no setup or teardown method).
        """
        key = _name_of(plugin, name)
        return _answer(self._plugin("register", key, _check(plugin), idempotent), key)

    def register_worker_plugin(self, plugin: Any, name: str | None = None,
                               idempotent: bool = False) -> dict[str, dict[str, str]]:
        """dask's older name of ``register_plugin``."""
        return self.register_plugin(plugin, name, idempotent)

    def unregister_worker_plugin(self, name: str) -> None:
        """Tear plugin ``name`` down on every worker and forget it.

        Raises:
            KeyError: no plugin of that name is registered.
        """
        _answer(self._plugin("unregister", name), name)


class AsyncPlugins:
    """``AsyncClient``'s plugin calls: the blocking client's, awaited."""

    _session: Session

    async def _plugin(self, op: str, name: str, blob: bytes = b"",
                      idempotent: bool = False) -> p.PluginReply:
        services = self._session.services
        reply: p.PluginReply = await self._on_trio(  # type: ignore[attr-defined]
            lambda: services.plugin(op, name, blob, idempotent))
        return reply

    async def register_plugin(self, plugin: Any, name: str | None = None,
                              idempotent: bool = False) -> dict[str, dict[str, str]]:
        """See the blocking client's ``register_plugin``."""
        key = _name_of(plugin, name)
        return _answer(await self._plugin("register", key, _check(plugin), idempotent), key)

    async def register_worker_plugin(self, plugin: Any, name: str | None = None,
                                     idempotent: bool = False) -> dict[str, dict[str, str]]:
        """dask's older name of ``register_plugin``."""
        return await self.register_plugin(plugin, name, idempotent)

    async def unregister_worker_plugin(self, name: str) -> None:
        """See the blocking client's ``unregister_worker_plugin``."""
        _answer(await self._plugin("unregister", name), name)
