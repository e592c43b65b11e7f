"""Supervision of worker processes: start one, and start it again when it dies.

A ``Nanny`` owns one worker process (the real ``trioflow-worker`` command line). When
the process ends, the nanny decides from its exit status:

* ``0`` (it drained and stopped), ``2`` (bad usage), ``3`` (refused to start
  insecurely) and ``EXIT_GIVE_UP`` (it gave up on the scheduler, or was refused) are the
  worker's own decisions: the nanny stops too. (Workers started by a nanny get
  ``--supervised``, which makes them use ``EXIT_GIVE_UP`` rather than ``1`` there, so
  that an ``os._exit(1)`` in a task still counts as a death.)
* ``EXIT_RESTART`` (see ``config``) is a worker asking for a fresh process (the memory
  limit asks this way): restarted at once, without using the restart budget;
* anything else (killed by a signal, ``os._exit`` in a task, a segfault, a crash) is a
  death: restarted after a pause that doubles with each death in a row, as long as the
  budget allows (``RestartPolicy``). A worker that has lived ``stable_after`` seconds
  starts a fresh run of pauses.

The scheduler sees a restarted worker as a new peer with the same name, so tasks
restricted to that name can run again, and the deaths count towards ``KilledWorker``
as for any lost worker.

Cancellation: cancelling ``run`` stops the process (SIGTERM, then SIGKILL after
``RestartPolicy.stop_grace`` seconds) and returns once it is reaped; no process is
left behind.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from . import config
from .net import shm

logger = logging.getLogger(__name__)

#: exit statuses by which a worker says it stopped on purpose: not restarted
FINAL_EXITS = frozenset({0, 2, 3, config.EXIT_GIVE_UP})


@attrs.frozen
class RestartPolicy:
    """How a nanny restarts a dying worker.

    Attributes:
        max_restarts: deaths allowed within ``window`` seconds; one more and the nanny
            gives up (logs an error and returns).
        window: the period ``max_restarts`` counts over, in seconds.
        first_delay, max_delay: the pause before a restart, doubling with each death in
            a row, in seconds.
        stable_after: a process that lived this long resets the pauses.
        stop_grace: seconds between SIGTERM and SIGKILL when the nanny stops it.
    """

    max_restarts: int = config.NANNY_MAX_RESTARTS
    window: float = config.NANNY_RESTART_WINDOW
    first_delay: float = config.NANNY_FIRST_DELAY
    max_delay: float = config.NANNY_MAX_DELAY
    stable_after: float = config.NANNY_STABLE_AFTER
    stop_grace: float = config.NANNY_STOP_GRACE


def describe_exit(code: int) -> str:
    """``returncode`` in words: "killed by SIGKILL", "exited with status 13"."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


@attrs.define(eq=False)
class Nanny:
    """Runs one worker process and restarts it when it dies (see the module doc).

    Attributes:
        argv: the worker's command line.
        name: the worker's name, for logs.
        env: its environment (default: ours).
        policy: backoff and budget.
        process: the process running now, if any.
        restarts: how many times it was started again.
        exits: every exit status seen, oldest first.
        new_session: start the process in a session (and process group) of its own, so
            a terminal's Ctrl-C reaches only the program, which stops its workers in
            order (SIGTERM from here) instead of every process at once.
    """

    argv: list[str]
    name: str
    env: Mapping[str, str] | None = None
    policy: RestartPolicy = attrs.field(factory=RestartPolicy)
    process: trio.Process | None = None
    restarts: int = 0
    exits: list[int] = attrs.field(factory=list)
    new_session: bool = True
    _deaths: list[float] = attrs.field(factory=list)
    _started: trio.Event = attrs.field(factory=trio.Event)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start the worker (``task_status.started()`` once the first process runs) and
        keep it running; return when it stops on purpose or the budget is spent.

        Cancellation: stops the current process and returns once it is reaped.
        """
        delay = self.policy.first_delay
        while True:
            began = trio.current_time()
            code = await self._run_once(task_status)
            task_status = trio.TASK_STATUS_IGNORED
            if code in FINAL_EXITS:
                logger.info("%s %s: not restarting it", self.name, describe_exit(code))
                return
            if code == config.EXIT_RESTART:
                logger.info("%s asked to be restarted", self.name)
                self.restarts += 1
                continue
            now = trio.current_time()
            if now - began >= self.policy.stable_after:
                delay = self.policy.first_delay
            self._deaths = [t for t in self._deaths if t > now - self.policy.window]
            self._deaths.append(now)
            if len(self._deaths) > self.policy.max_restarts:
                logger.error("%s %s, its %d death in %gs: giving up on it",
                             self.name, describe_exit(code), len(self._deaths),
                             self.policy.window)
                return
            logger.warning("%s %s; restarting it in %.2gs", self.name, describe_exit(code),
                           delay)
            await trio.sleep(delay)
            delay = min(delay * 2, self.policy.max_delay)
            self.restarts += 1

    async def _run_once(self, task_status: Any) -> int:
        """One process's life: its exit status (negative: the signal that killed it)."""
        proc = await trio.lowlevel.open_process(self.argv, env=self.env,
                                                start_new_session=self.new_session)
        self.process = proc
        task_status.started(proc)
        try:
            await proc.wait()
        finally:
            if proc.returncode is None:  # cancelled: we stop it
                with trio.CancelScope(shield=True):
                    await stop_process(proc, self.policy.stop_grace)
            self.process = None
            assert proc.returncode is not None
            # a killed worker cannot remove its shared-memory segments: we do (net/shm.py)
            shm.remove_of(proc.pid)
            self.exits.append(proc.returncode)
        return proc.returncode


async def stop_process(proc: trio.Process, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns once reaped."""
    if proc.returncode is None:
        try:
            proc.terminate()
        except ProcessLookupError:  # pragma: no cover - it just exited
            pass
        with trio.move_on_after(grace):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
