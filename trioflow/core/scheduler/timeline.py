"""Answering for the run log: which runs finished, where, on which thread and when.

The log itself (``SchedulerState.runs``, one tuple per finished run, bounded by
``RUN_LOG_LENGTH``) is appended to by ``lifecycle.task_finished``; this handler only
reads it, for performance reports (``client.performance_report``).
"""

from __future__ import annotations

from itertools import islice

from ... import protocol as p
from .state import SchedulerState

#: runs sent in one reply at most (a client asks again for the rest)
MAX_RUNS_PER_REPLY = 20_000


def runs_request(state: SchedulerState, peer_id: str, msg: p.RunsRequest) -> None:
    log = state.runs
    total = state.runs_total
    first_kept = total - len(log)
    start = min(max(msg.since, first_kept), total)
    count = min(total - start, max(0, min(msg.limit, MAX_RUNS_PER_REPLY)))
    workers = state.workers
    rows = []
    for key, worker_id, thread, begin, duration, nbytes, parent, depth in islice(
            log, start - first_kept, start - first_kept + count):
        w = workers.get(worker_id)
        rows.append([key, w.name if w is not None else worker_id, thread, begin, duration,
                     nbytes, parent, depth])
    state.send(peer_id, p.RunsReply(msg.request_id, start, start + count, total, rows))
