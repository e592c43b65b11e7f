"""What the scheduler keeps only so that it can be watched: the run log, and what
workers report of their threads.

The run log (``SchedulerState.runs``, one tuple per finished run, bounded by
``RUN_LOG_LENGTH``) is appended to by ``lifecycle.task_finished``; ``runs_request`` only
reads it, for performance reports (``client.performance_report``). ``worker_threads``
keeps each worker's latest ``WorkerThreads`` report for the dashboard.
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
    for key, worker_id, thread, begin, duration, nbytes, parent, depth, ok in islice(
            log, start - first_kept, start - first_kept + count):
        w = workers.get(worker_id)
        rows.append([key, w.name if w is not None else worker_id, thread, begin, duration,
                     nbytes, parent, depth, ok])
    state.send(peer_id, p.RunsReply(msg.request_id, start, start + count, total, rows))


def worker_threads(state: SchedulerState, peer_id: str, msg: p.WorkerThreads) -> None:
    if peer_id not in state.workers:
        return  # only workers have task threads
    reports = state.worker_threads
    reports[peer_id] = msg
    if len(reports) > 2 * len(state.workers):  # drop the reports of workers gone
        for gone in [w for w in reports if w not in state.workers]:
            del reports[gone]
