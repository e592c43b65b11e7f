"""The threads that run sync task bodies: long-lived, bounded, and able to help.

Slots and threads are different things. A *slot* is a token of the worker's
``trio.CapacityLimiter`` (held by a run, accounted by the ledger). A *thread* runs a
job. A run that secedes gives its token back but keeps its thread ("parked"), so a
worker needs up to ``nthreads + max_parked`` threads.

* Jobs go to an idle thread (handing one over costs a few microseconds, against
  75-230 us for ``trio.to_thread.run_sync``), else to a new thread while under the cap.
* At the cap, new threads are not started (dask starts one per secede, without limit).
  A parked thread that is *waiting on futures* registers as a helper and runs queued
  jobs inline while it waits, so the cap can never deadlock the worker: every thread
  either computes (and will finish or wait) or waits (and then helps).
* Threads are daemons: a worker process never hangs at exit on a task that will not
  return.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class SlotThreads:
    """A bounded pool of task threads with helping.

    Args:
        max_threads: the most threads that may exist (slots + parked cap).
        name: thread name prefix.
    """

    def __init__(self, max_threads: int, name: str = "trioflow-task") -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be >= 1, got {max_threads}")
        self.max_threads = max_threads
        self.name = name
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._jobs: deque[Callable[[], None]] = deque()
        self._idle = 0
        self._helpers: list[Any] = []
        self.threads = 0
        self.peak_threads = 0
        self.helped = 0  # jobs run inline by waiting threads
        self._closing = False

    def __repr__(self) -> str:
        return (f"<SlotThreads threads={self.threads}/{self.max_threads} idle={self._idle} "
                f"queued={len(self._jobs)} helpers={len(self._helpers)}>")

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on some thread soon. Never blocks."""
        with self._lock:
            if self._idle > len(self._jobs):
                self._jobs.append(job)
                self._cond.notify()
                return
            if self.threads < self.max_threads:
                self.threads += 1
                self.peak_threads = max(self.peak_threads, self.threads)
                t = threading.Thread(target=self._main, args=(job,), daemon=True,
                                     name=f"{self.name}-{self.threads}")
                t.start()
                return
            if self._helpers:
                helper = self._helpers.pop()
                self.helped += 1
                helper.give_job(job)
                return
            self._jobs.append(job)

    def add_helper(self, waiter: Any) -> None:
        """A parked thread is about to wait on ``waiter``: it may run queued jobs meanwhile."""
        with self._lock:
            if self._jobs and self.threads >= self.max_threads:
                self.helped += 1
                waiter.give_job(self._jobs.popleft())
            else:
                waiter.pool = self
                self._helpers.append(waiter)

    def remove_helper(self, waiter: Any) -> None:
        with self._lock:
            if waiter in self._helpers:
                self._helpers.remove(waiter)

    def close(self) -> None:
        """Let idle threads exit; busy ones exit when their job returns."""
        with self._lock:
            self._closing = True
            self._cond.notify_all()

    def _main(self, job: Callable[[], None]) -> None:
        while True:
            try:
                job()
            except BaseException:  # a job reports its own errors; this is a last resort
                logger.exception("task thread job raised")
            with self._lock:
                while not self._jobs and not self._closing:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                if not self._jobs:
                    self.threads -= 1
                    return
                job = self._jobs.popleft()
