"""What the dashboard shows, read from the scheduler's sans-IO state without changing it.

``Observer.snapshot(now)`` is the one way in: a JSON-ready dict. Its cost is kept small
and bounded, because it runs in the scheduler's own Trio thread:

* finished runs come from the scheduler's run log (``SchedulerState.runs``, one tuple
  appended per finished task): each snapshot folds in only the runs since the last one
  (per-function counts, the tree of tasks launching tasks, result bytes, the stream);
* workers, seceded runs, waits and deadlock reports are read directly: they are
  O(workers + runs on workers), not O(tasks);
* counting live tasks by function and state, and the bytes each worker holds, needs a
  pass over every task. That pass is timed and the next one waits until the time spent
  in passes is at most ``scan_share`` of the time elapsed; in between, the last pass's
  counts are shown (``scan_age`` says how old they are).

The scheduler's core has no clock, so times come from the caller (``now``) and from the
workers (a run's start is the worker's ``time.time()``).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from ..core.scheduler.records import TaskStatus
from ..core.scheduler.state import SchedulerState

#: live task states, in the order the pages show them
LIVE_STATES = ("waiting", "queued", "processing", "memory", "erred")
#: wait-for edges shown at most (a big graph is unreadable and costly to send)
MAX_WAIT_EDGES = 300


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
        scan_share: the most of the elapsed time the full task-table pass may take.
    """

    def __init__(self, state: SchedulerState, *, stream_length: int = 2000,
                 scan_share: float = 0.01) -> None:
        self.state = state
        self.scan_share = scan_share
        #: ``state.runs_total`` already folded in
        self._seen = 0
        #: finished runs per function name
        self.done: dict[str, int] = {}
        #: (depth, parent function, function) -> finished runs
        self.tree_done: dict[tuple[int, str, str], int] = {}
        self.result_bytes = 0
        #: runs that left the run log before a snapshot saw them
        self.runs_missed = 0
        #: the latest finished runs: [seq, worker, thread, function, key, start, duration]
        self.recent: deque[list[Any]] = deque(maxlen=stream_length)
        #: stream rows folded in so far (a cursor for ``stream_since``)
        self.folded = 0
        self._scan: dict[str, Any] = {"live": {}, "tree": {}, "memory": {}, "tasks": {}}
        self._scan_at = float("-inf")
        self._next_scan = float("-inf")
        #: seconds spent in snapshots and in full passes, for the benchmark and tests
        self.cost = 0.0
        self.scan_cost = 0.0

    # ------------------------------------------------------------------ incremental

    def fold_runs(self) -> list[list[Any]]:
        """Fold the runs finished since the last call in; return them as stream rows."""
        state = self.state
        new = state.runs_total - self._seen
        if not new:
            return []
        self._seen = state.runs_total
        log = state.runs
        if new > len(log):
            self.runs_missed += new - len(log)
            new = len(log)
        workers = state.workers
        done, tree = self.done, self.tree_done
        rows: list[list[Any]] = []
        nbytes = 0
        for i in range(len(log) - new, len(log)):
            key, worker_id, thread, start, duration, size, parent, depth = log[i]
            fn = key_split(key)
            done[fn] = done.get(fn, 0) + 1
            edge = (depth, key_split(parent) if parent else "", fn)
            tree[edge] = tree.get(edge, 0) + 1
            nbytes += size
            w = workers.get(worker_id)
            rows.append([self.folded + len(rows), w.name if w is not None else worker_id,
                         thread, fn, key, start, duration])
        self.result_bytes += nbytes
        self.recent.extend(rows)
        self.folded += len(rows)
        return rows

    def stream_since(self, n: int) -> list[list[Any]]:
        """The kept stream rows folded in after the first ``n`` (``folded`` counts them),
        at most 1000: each reader keeps its own cursor."""
        recent = self.recent
        k = min(self.folded - n, len(recent), 1000)
        return [recent[i] for i in range(len(recent) - k, len(recent))] if k > 0 else []

    # ------------------------------------------------------------------ full pass

    def _full_pass(self) -> None:
        state = self.state
        tasks = state.tasks
        live: dict[str, dict[str, int]] = {}
        tree: dict[tuple[int, str, str], int] = {}
        by_status: dict[str, int] = {}
        for key, t in tasks.items():
            status = t.status.value
            by_status[status] = by_status.get(status, 0) + 1
            fn = key_split(key)
            counts = live.get(fn)
            if counts is None:
                counts = live[fn] = {}
            counts[status] = counts.get(status, 0) + 1
            if t.status is not TaskStatus.MEMORY:
                edge = (t.depth, key_split(t.parent) if t.parent else "", fn)
                tree[edge] = tree.get(edge, 0) + 1
        memory = {}
        for wid, w in state.workers.items():
            total = 0
            for key in w.has_what:
                held = tasks.get(key)
                if held is not None:
                    total += held.nbytes
            memory[wid] = total
        self._scan = {"live": live, "tree": tree, "memory": memory, "tasks": by_status}

    def _maybe_scan(self, now: float) -> None:
        if now < self._next_scan:
            return
        t0 = time.perf_counter()
        self._full_pass()
        spent = time.perf_counter() - t0
        self.scan_cost += spent
        self._scan_at = now
        self._next_scan = now + spent / self.scan_share

    # ------------------------------------------------------------------ the snapshot

    def snapshot(self, now: float, *, since: int | None = None) -> dict[str, Any]:
        """The dashboard's data at ``now`` (epoch seconds), JSON-ready.

        Args:
            since: include the stream rows after this cursor (``stream_since``) under
                ``"stream"``, and the new cursor under ``"folded"``; None: no rows.
        """
        t0 = time.perf_counter()
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
        for wid, w in state.workers.items():
            running = min(w.occupying, w.nthreads)
            workers.append({
                "id": wid, "name": w.name, "slots": w.nthreads,
                "busy": running - min(w.blocked, running), "blocked": w.blocked,
                "seceded": seceded_on.get(wid, 0),
                "queued": max(0, w.occupying - w.nthreads),
                "processing": len(w.processing), "closing": w.closing,
                "memory": scan["memory"].get(wid), "holds": len(w.has_what),
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
        for fn in sorted(set(self.done) | set(live)):
            counts = live.get(fn, {})
            row: dict[str, Any] = {"fn": fn, "done": self.done.get(fn, 0)}
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
        self.cost += time.perf_counter() - t0
        return snap
