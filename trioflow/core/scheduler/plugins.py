"""Worker plugins (``Client.register_plugin``): objects whose ``setup(worker)`` runs on
every worker, now and on each that joins later, before its first task; and whose
``teardown(worker)`` runs when they are unregistered or the worker stops (as dask's
``WorkerPlugin``).

The scheduler keeps each plugin as the client's pickle (opaque here) under its name and
sends it to the workers (``InstallPlugin``): to those connected when it is registered,
and to every worker that joins, in the same event as its joining, so the plugin comes
before any task on that connection. A registration is answered once each worker that
was connected then has set it up or left (``PluginInstalled``).
"""

from __future__ import annotations

from ... import protocol as p
from .records import PluginWait
from .state import SchedulerState


def request(state: SchedulerState, peer_id: str, msg: p.PluginRequest) -> None:
    """Handler of ``PluginRequest``: register or unregister."""
    if not msg.name:
        state.send(peer_id, p.PluginReply(msg.request_id, "invalid", "a plugin needs a name"))
    elif msg.op == "register":
        _register(state, peer_id, msg)
    elif msg.op == "unregister":
        if state.plugins.pop(msg.name, None) is None:
            state.send(peer_id, p.PluginReply(msg.request_id, "missing",
                                              f"no worker plugin named {msg.name!r}"))
            return
        for worker_id in state.workers:
            state.send(worker_id, p.RemovePlugin(msg.name))
        state.send(peer_id, p.PluginReply(msg.request_id, "ok"))
    else:
        state.send(peer_id, p.PluginReply(msg.request_id, "invalid",
                                          f"unknown plugin operation {msg.op!r}"))


def _register(state: SchedulerState, peer_id: str, msg: p.PluginRequest) -> None:
    if msg.idempotent and msg.name in state.plugins:
        state.send(peer_id, p.PluginReply(msg.request_id, "ok"))
        return
    state.plugins[msg.name] = msg.blob
    wait = PluginWait(peer_id, msg.request_id, msg.name, set(state.workers))
    for worker_id in state.workers:
        state.send(worker_id, p.InstallPlugin(msg.name, msg.blob))
    state.plugin_waits.append(wait)
    _answer_done(state)


def installed(state: SchedulerState, peer_id: str, msg: p.PluginInstalled) -> None:
    """Handler of ``PluginInstalled``: one worker's setup ended."""
    worker = state.workers.get(peer_id)
    if worker is None:
        return
    for wait in state.plugin_waits:
        if wait.name == msg.name and peer_id in wait.waiting:
            wait.waiting.discard(peer_id)
            wait.results.append([worker.name, msg.error])
    _answer_done(state)


def worker_joined(state: SchedulerState, peer_id: str) -> None:
    """A worker joined: it sets up every plugin before anything else reaches it."""
    if peer_id in state.workers:
        for name, blob in state.plugins.items():
            state.send(peer_id, p.InstallPlugin(name, blob))


def peer_left(state: SchedulerState, peer_id: str) -> None:
    """A worker that left answers no more; a client that left waits for nothing."""
    state.plugin_waits = [w for w in state.plugin_waits if w.peer_id != peer_id]
    for wait in state.plugin_waits:
        wait.waiting.discard(peer_id)
    _answer_done(state)


def _answer_done(state: SchedulerState) -> None:
    done = [w for w in state.plugin_waits if not w.waiting]
    if not done:
        return
    state.plugin_waits = [w for w in state.plugin_waits if w.waiting]
    for wait in done:
        state.send(wait.peer_id, p.PluginReply(wait.request_id, "ok", results=wait.results))
