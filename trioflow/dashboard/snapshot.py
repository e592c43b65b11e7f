"""What the dashboard shows, read from the scheduler's sans-IO state without changing it.

``Observer.snapshot(now)`` is the one way in: a JSON-ready dict. Its cost is kept small
and bounded, because it runs in the scheduler's own Trio thread:

* finished runs come from the scheduler's run log (``SchedulerState.runs``, one tuple
  appended per finished task): each snapshot folds in only the runs since the last one
  (per-function counts, the tree of tasks launching tasks, result bytes, the stream);
* workers, seceded runs, waits and deadlock reports are read directly: they are
  O(workers + runs on workers), not O(tasks);
* counting live tasks by function and state, and the bytes each worker holds, needs a
  pass over every task. That pass is timed, and the next one waits until the process
  has used enough CPU that the passes stay at most ``scan_share`` of it (see
  ``_maybe_scan`` for the idle case); in between, the last pass's counts are shown
  (``scan_age`` says how old they are).

The scheduler's core has no clock, so times come from the caller (``now``) and from the
workers (a run's start is the worker's ``time.time()``).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable
from itertools import compress, islice, repeat
from operator import attrgetter, itemgetter
from typing import Any

from ..core.scheduler.records import TaskStatus
from ..core.scheduler.state import SchedulerState

#: live task states, in the order the pages show them
LIVE_STATES = ("waiting", "queued", "processing", "memory", "erred")
#: stream rows sent in one update at most (the newest)
MAX_STREAM_ROWS = 500
#: wait-for edges shown at most (a big graph is unreadable and costly to send)
MAX_WAIT_EDGES = 300


_status = attrgetter("status")
_nbytes = attrgetter("nbytes")
# fields of a RunRecord
_first, _size, _parent, _depth, _ok = (itemgetter(0), itemgetter(5), itemgetter(6),
                                       itemgetter(7), itemgetter(8))
MEMORY = TaskStatus.MEMORY
STATUS_NAMES = {id(status): status.value for status in TaskStatus}


def _names(keys: Iterable[str]) -> list[str]:
    """``key_split`` of each key, in C: ``str.partition`` mapped, then the first part.

    Only a key that starts with "-" splits differently (to ""); those few are redone.
    """
    keys = keys if isinstance(keys, list) else list(keys)
    names = list(map(_first, map(str.partition, keys, repeat("-"))))
    if "" in names:
        names = [n or k for n, k in zip(names, keys)]
    return names


def _add(total: dict[Any, int], counts: Counter[Any]) -> None:
    for k, n in counts.items():
        total[k] = total.get(k, 0) + n


def key_split(key: str) -> str:
    """The function name a task key starts with: ``"inc-3f2a-7"`` -> ``"inc"``.

    Keys made by ``submit`` are ``f"{name}-{suffix}"``; any other key is its own name.
    """
    name, sep, _ = key.partition("-")
    return name if sep and name else key


class Observer:
    """Folds the scheduler's state into dashboard snapshots (read-only).

    Args:
        state: the scheduler's records (``SchedulerServer.state``).
        stream_length: finished runs kept for the task stream.
        scan_share: the share of the process's CPU time the full task-table pass may take.
    """

    def __init__(self, state: SchedulerState, *, stream_length: int = 1000,
                 scan_share: float = 0.005) -> None:
        self.state = state
        self.scan_share = scan_share
        #: ``state.runs_total`` already folded in
        self._seen = 0
        #: runs that returned, per function name
        self.done: dict[str, int] = {}
        #: runs that raised, per function name (a retried task may raise several times)
        self.raised: dict[str, int] = {}
        #: (depth, parent function, function) -> finished runs
        self.tree_done: dict[tuple[int, str, str], int] = {}
        self.result_bytes = 0
        #: runs that left the run log before a snapshot saw them
        self.runs_missed = 0
        #: the latest finished runs: [seq, worker, thread, function, key, start, duration,
        #: returned]
        self.recent: deque[list[Any]] = deque(maxlen=stream_length)
        #: runs folded in so far, each with a stream sequence number (a cursor for
        #: ``stream_since``)
        self.folded = 0
        self._scan: dict[str, Any] = {"live": {}, "tree": {}, "memory": {}, "tasks": {},
                                      "holds": {}}
        self._scan_at = float("-inf")
        self._scan_cpu = float("-inf")
        self._scan_spent = 0.0
        #: seconds spent in snapshots and in full passes, for the benchmark and tests
        self.cost = 0.0
        self.scan_cost = 0.0

    # ------------------------------------------------------------------ incremental

    def fold_runs(self) -> list[list[Any]]:
        """Fold the runs finished since the last call in; return the stream rows made.

        Every new run is counted, in C (``Counter`` over ``map``s: at 10k tasks/s this
        loop is most of the dashboard's cost); rows (a list each) are made only for the
        last ``stream_length`` runs, which is all the stream keeps.
        """
        state = self.state
        new = state.runs_total - self._seen
        if not new:
            return []
        self._seen = state.runs_total
        log = state.runs
        if new > len(log):
            self.runs_missed += new - len(log)
            new = len(log)
        batch = list(islice(reversed(log), new))
        batch.reverse()
        fns = _names(map(_first, batch))
        parents = _names(map(_parent, batch))
        returned = list(map(_ok, batch))
        _add(self.done, Counter(compress(fns, returned)))
        _add(self.tree_done, Counter(compress(zip(map(_depth, batch), parents, fns), returned)))
        if not all(returned):
            _add(self.raised, Counter(fn for fn, ok in zip(fns, returned) if not ok))
        self.result_bytes += sum(map(_size, batch))
        keep = min(new, self.recent.maxlen or new)
        seq = self.folded + new - keep
        workers = state.workers
        rows: list[list[Any]] = []
        for i in range(new - keep, new):
            key, worker_id, thread, start, duration, _, _, _, ok = batch[i]
            w = workers.get(worker_id)
            rows.append([seq, w.name if w is not None else worker_id, thread, fns[i], key,
                         start, duration, ok])
            seq += 1
        self.recent.extend(rows)
        self.folded += new
        return rows

    def stream_since(self, n: int) -> list[list[Any]]:
        """The kept stream rows folded in after the first ``n`` (``folded`` counts them),
        at most ``MAX_STREAM_ROWS`` (the newest): each reader keeps its own cursor. At
        10k tasks/s the page gets a sample of the runs, which is all it can draw."""
        recent = self.recent
        k = min(self.folded - n, len(recent), MAX_STREAM_ROWS)
        return [recent[i] for i in range(len(recent) - k, len(recent))] if k > 0 else []

    # ------------------------------------------------------------------ full pass

    def _full_pass(self) -> None:
        state = self.state
        tasks = state.tasks
        # counted in C (Counter over maps): this is the one pass over every task, and
        # its cost is what bounds how often it may run
        fns = _names(tasks)
        records = tasks.values()
        # by the statuses' ids: an Enum hashes in Python, an int in C
        by_fn_status = Counter(zip(fns, map(id, map(_status, records))))
        live: dict[str, dict[str, int]] = {}
        by_status: dict[str, int] = {}
        for (fn, status_id), n in by_fn_status.items():
            name = STATUS_NAMES[status_id]
            live.setdefault(fn, {})[name] = n
            by_status[name] = by_status.get(name, 0) + n
        unfinished = [(t, fn) for t, fn in zip(records, fns) if t.status is not MEMORY]
        tree = dict(Counter(zip([t.depth for t, _ in unfinished],
                                _names(t.parent for t, _ in unfinished),
                                [fn for _, fn in unfinished])))
        memory = {}
        holds = {wid: len(w.has_what) for wid, w in state.workers.items()}
        for wid, w in state.workers.items():
            try:
                memory[wid] = sum(map(_nbytes, map(tasks.__getitem__, w.has_what)))
            except KeyError:  # between two events the records agree; be safe anyway
                memory[wid] = sum(tasks[k].nbytes for k in w.has_what if k in tasks)
        self._scan = {"live": live, "tree": tree, "memory": memory, "tasks": by_status,
                      "holds": holds}

    def _maybe_scan(self, now: float) -> None:
        """Run the full pass if enough has happened since the last one.

        Busy: once the process has used ``spent / scan_share`` CPU seconds since (so the
        passes take at most about ``scan_share`` of the scheduler's CPU). Idle (the
        process used under 5% of the time for other work): after ``spent / 0.05`` wall
        seconds, and at least one, so the counts catch up when the work stops.
        """
        cpu = time.process_time()
        cpu_since, wall_since = cpu - self._scan_cpu, now - self._scan_at
        busy = cpu_since - self._scan_spent
        spent = self._scan_spent
        if cpu_since < spent / self.scan_share and not (
                wall_since >= max(1.0, spent / 0.05) and busy < 0.05 * wall_since):
            return
        t0 = time.thread_time()
        self._full_pass()
        spent = self._scan_spent = time.thread_time() - t0
        self.scan_cost += spent
        self._scan_at, self._scan_cpu = now, cpu

    # ------------------------------------------------------------------ the snapshot

    def snapshot(self, now: float, *, since: int | None = None) -> dict[str, Any]:
        """The dashboard's data at ``now`` (epoch seconds), JSON-ready.

        Args:
            since: include the stream rows after this cursor (``stream_since``) under
                ``"stream"``, and the new cursor under ``"folded"``; None: no rows.
        """
        t0 = time.thread_time()
        self.fold_runs()
        self._maybe_scan(now)
        state = self.state
        scan = self._scan
        seceded_on: dict[str, int] = {}
        for t in state.seceded.values():
            if t.worker is not None:
                seceded_on[t.worker] = seceded_on.get(t.worker, 0) + 1
        workers = []
        waits: list[list[str]] = []
        reports = state.worker_threads
        for wid, w in state.workers.items():
            running = min(w.occupying, w.nthreads)
            report = reports.get(wid)
            workers.append({
                "id": wid, "name": w.name, "slots": w.nthreads,
                "busy": running - min(w.blocked, running), "blocked": w.blocked,
                "seceded": seceded_on.get(wid, 0),
                "queued": max(0, w.occupying - w.nthreads),
                "processing": len(w.processing), "closing": w.closing,
                # results held, and their bytes, as of the last full pass
                "memory": scan["memory"].get(wid), "holds": scan["holds"].get(wid),
                # what the worker itself reports (None until its first report)
                "threads": report.threads if report else None,
                "idle_threads": report.idle if report else None,
                "overflow": report.overflow if report else None,
                "rss": (report.rss or None) if report else None,
            })
            if len(waits) < MAX_WAIT_EDGES:
                for t in w.processing.values():
                    if t.blocked_on:
                        for dep in sorted(t.blocked_on):
                            waits.append([t.key, dep])
                        if len(waits) >= MAX_WAIT_EDGES:
                            break
        progress = []
        live = scan["live"]
        for fn in sorted(set(self.done) | set(self.raised) | set(live)):
            counts = live.get(fn, {})
            row: dict[str, Any] = {"fn": fn, "done": self.done.get(fn, 0),
                                   "raised": self.raised.get(fn, 0)}
            for s in LIVE_STATES:
                row[s] = counts.get(s, 0)
            progress.append(row)
        tree_live = scan["tree"]
        tree = [{"depth": d, "parent": parent, "fn": fn,
                 "done": self.tree_done.get((d, parent, fn), 0),
                 "live": tree_live.get((d, parent, fn), 0)}
                for d, parent, fn in sorted(set(self.tree_done) | set(tree_live))]
        snap = {
            "time": now,
            "workers": workers,
            "clients": len(state.peers) - len(state.workers),
            "tasks": scan["tasks"],
            "held": len(state.tasks),
            "seceded": len(state.seceded),
            "progress": progress,
            "tree": tree,
            "waits": waits,
            "deadlocks": len(state.deadlocks),
            "deadlock": state.deadlocks[-1] if state.deadlocks else "",
            "runs_total": state.runs_total,
            "runs_missed": self.runs_missed,
            "result_bytes": self.result_bytes,
            "scan_age": now - self._scan_at if self._scan_at > float("-inf") else None,
            "stream": self.stream_since(since) if since is not None else [],
            "folded": self.folded,
        }
        self.cost += time.thread_time() - t0
        return snap
