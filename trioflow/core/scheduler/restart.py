"""``Client.restart``: forget the work, restart every worker.

As in dask, every task of every client is cancelled (their futures raise
``CancelledError``), results are dropped (and the named datasets holding them are
deleted), and every worker gets a fresh process: a worker run by a nanny (local
clusters, ``trioflow-worker --nworkers``) says so in its Hello and exits with ``config.EXIT_RESTART`` when told (``RestartWorker``); its nanny
starts it again at once and it joins as a new peer. A cluster with any worker that
cannot be restarted (no nanny) is refused, before anything is cancelled. The client
waits for as many new workers as there were.
"""

from __future__ import annotations

from ... import protocol as p
from . import ops
from .records import TaskStatus
from .state import SchedulerState

#: what futures of the cancelled work say
RESTART_REASON = ("cancelled by Client.restart: the cluster was restarted and forgot "
                  "its work; submit it again")


def restart_request(state: SchedulerState, peer_id: str, msg: p.RestartRequest) -> None:
    """Handler of ``RestartRequest``."""
    fixed = sorted(w.name for w in state.workers.values() if not w.restartable)
    if fixed:
        state.send(peer_id, p.RestartReply(
            msg.request_id, "refused",
            f"restart: the workers {fixed} run without a nanny, so they cannot be "
            f"restarted; nothing was cancelled. Start workers supervised (a local cluster "
            f"of processes, Client() or LocalCluster(), or trioflow-worker --nworkers N), "
            f"or restart them yourself", []))
        return
    ops.forget_datasets(state)  # (their results are dropped below)
    for task in list(state.tasks.values()):
        if state.tasks.get(task.key) is not task or task.status is TaskStatus.ERRED:
            continue  # (released by an earlier failure in this loop, or failed before)
        if task.status is TaskStatus.MEMORY:
            ops.drop_value(state, task)
        ops.fail(state, task, p.KeyErred(
            task.key, "cancelled", b"", "trioflow.errors.CancelledError", RESTART_REASON))
    old = sorted(state.workers)
    for worker_id in old:
        state.send(worker_id, p.RestartWorker())
    state.send(peer_id, p.RestartReply(msg.request_id, "", "", old))
