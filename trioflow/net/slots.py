"""The threads that run sync task bodies: long-lived, bounded, and able to help.

Slots and threads are different things. A *slot* is a token of the worker's
``trio.CapacityLimiter`` (held by a run, accounted by the ledger). A *thread* runs a
job. A run that secedes gives its token back but keeps its thread ("parked"), so a
worker needs up to ``nthreads + max_parked`` threads.

* Jobs go to an idle thread (handing one over costs a few microseconds, against
  75-230 us for ``trio.to_thread.run_sync``), else to a new thread while under the cap.
* At the cap, new threads are not started (dask starts one per secede, without limit).
  A parked thread that is *waiting on futures* registers as a helper and runs deeper
  jobs inline while it waits. Only if no waiting thread may take a job is a thread
  started beyond the cap (counted in ``overflow``), so the cap never deadlocks.
* Threads are daemons: a worker process never hangs at exit on a task that will not
  return.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import config

logger = logging.getLogger(__name__)


class SlotThreads:
    """A bounded pool of task threads with helping.

    Args:
        max_threads: threads allowed before jobs go to helpers (slots + parked cap).
        name: thread name prefix.

    Jobs carry the depth of their task in the task tree. A waiting thread only helps
    with *deeper* work, so the nesting on its stack is bounded by the depth of the tree
    (helping with arbitrary jobs grows stacks without bound: RecursionError). When no
    waiting thread may help and the cap is reached, one more thread is started and
    counted in ``overflow``: exceeding the cap is better than a deadlock.
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
        self.overflow = 0  # threads started beyond max_threads to avoid a deadlock
        self._closing = False
        #: how many helping waits each thread is inside (``wait_helping``)
        self._nesting = threading.local()

    @property
    def idle(self) -> int:
        """Threads waiting for a job (read without the lock: a report, not a decision)."""
        return self._idle

    def __repr__(self) -> str:
        return (f"<SlotThreads threads={self.threads}/{self.max_threads} idle={self._idle} "
                f"helpers={len(self._helpers)} overflow={self.overflow}>")

    def submit(self, job: Callable[[], None], depth: int = 0, key: str = "") -> None:
        """Run ``job`` (the run of ``key``, a task ``depth`` deep in the tree) on some
        thread soon.

        A waiting thread that waits on ``key`` itself (and is shallower) runs it first:
        its thread waits anyway, the job's end then wakes no other thread, and another
        key it waits on can follow on the same stack (``RunExecutor._run_sync``). Only
        what it waits on: any other job could wait on something that only the waiting
        task's continuation, stuck below it on the stack, would produce (a hang the
        scheduler cannot see), while a job the task waits on that waits on the task is
        a deadlock of the program itself, threads or not.
        """
        with self._lock:
            if key:
                for i in range(len(self._helpers) - 1, -1, -1):
                    helper = self._helpers[i]
                    if (key in helper.awaits and helper.depth < depth
                            and helper.nesting < config.MAX_HELPING_NESTING):
                        del self._helpers[i]
                        self.helped += 1
                        helper.give_job(job)
                        return
            if self._idle > len(self._jobs):
                self._jobs.append(job)
                self._cond.notify()
                return
            if self.threads >= self.max_threads:
                for i in range(len(self._helpers) - 1, -1, -1):
                    helper = self._helpers[i]
                    if helper.depth < depth and helper.nesting < config.MAX_HELPING_NESTING:
                        del self._helpers[i]
                        self.helped += 1
                        helper.give_job(job)
                        return
                self.overflow += 1
                if self.overflow == 1:
                    logger.warning("%s: all %d task threads are in use and none may help; starting more "
                                   "(raise max_parked_threads if this is common)",
                                   self.name, self.threads)
            self.threads += 1
            self.peak_threads = max(self.peak_threads, self.threads)
            threading.Thread(target=self._main, args=(job,), daemon=True,
                             name=f"{self.name}-{self.threads}").start()

    def add_helper(self, waiter: Any) -> None:
        """A parked thread is about to wait on ``waiter``: it may run deeper jobs meanwhile."""
        with self._lock:
            waiter.pool = self  # it comes back here after each job it runs
            self._helpers.append(waiter)

    def remove_helper(self, waiter: Any) -> list[Callable[[], None]]:
        """``waiter``'s wait is over: no more jobs for it. Returns jobs handed to it that
        it has not run yet; the caller must run them (their runs hold slot tokens)."""
        with self._lock:
            if waiter in self._helpers:
                self._helpers.remove(waiter)
            waiter.pool = None
            return waiter.take_jobs()

    def wait_helping(self, waiter: Any, timeout: float | None,
                     helping: Callable[[], None] | None = None) -> bool:
        """Wait on ``waiter`` from a parked task thread, running deeper jobs meanwhile;
        ``helping()`` is called once it may be handed jobs, before it sleeps.

        A thread nested ``config.MAX_HELPING_NESTING`` waits deep is handed no more
        jobs (its stack is bounded; they go to other threads).

        Returns what ``waiter.wait`` returned (False: timed out).
        """
        nesting = self._nesting
        outer = getattr(nesting, "level", 0)
        nesting.level = waiter.nesting = outer + 1
        self.add_helper(waiter)
        try:
            if helping is not None:
                helping()
            return waiter.wait(timeout)
        finally:
            try:
                for job in self.remove_helper(waiter):
                    job()
            finally:
                nesting.level = outer

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
