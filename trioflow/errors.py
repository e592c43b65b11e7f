"""Every exception trioflow raises, in one module with stable import paths.

The tree:

    TrioflowError
    ├── ProtocolError                  a peer spoke something other than our protocol
    │   ├── LocalProtocolError         we tried to send something illegal (a bug of ours)
    │   └── RemoteProtocolError        the peer sent something illegal; its connection is closed
    │       └── ProtocolVersionError   no protocol version in common
    ├── AuthenticationError            wrong or missing token
    ├── InternalError                  a bug in trioflow: an invariant broke; never a user error
    │   ├── InvalidTransition          a core state machine was asked to do the impossible
    │   └── SlotAccountingError        the slot ledger and the limiter disagree
    ├── TaskFailed                     a task raised and its exception could not be rebuilt here
    ├── CancelledError                 the future was cancelled
    ├── KilledWorker                   a task was running on too many workers that died
    ├── WorkerLost                     the worker holding a result went away
    ├── DeadlockError                  tasks wait on work that can never get a slot
    ├── ClientClosedError              the client or its cluster is gone
    ├── SerializationError             an object could not be pickled (names where it sits)
    ├── NotInTaskError                 secede/rejoin/worker_client outside a task
    ├── NoClientError                  get_client() where no client is known
    ├── AddressError                   not a scheduler address (also a ValueError)
    ├── NoWorkersError                 no connected worker can run a task
    └── SpillError                     a worker could not spill a value to disk (also an OSError)

All of them pickle, so they travel from workers to clients intact.

``InternalError`` stands apart from the rest (as trio's ``TrioInternalError`` does):
the others describe something a user, a task or a peer did, and the code that raises
them expects them to be handled; an ``InternalError`` means trioflow's own state can no
longer be trusted. Nothing catches it to go on: the scheduler stops with a critical log
line when its core raises one.
"""

from __future__ import annotations


class TrioflowError(Exception):
    """Base class of every trioflow error."""


class ProtocolError(TrioflowError):
    """A message broke the wire protocol.

    Attributes:
        close_code: the WebSocket close code a connection closed for this error gets
            (RFC 6455 leaves 4000-4999 to applications); ``net/handshake.py`` maps
            codes back to errors on the other side.
    """

    close_code = 4000


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol does not allow: a bug in trioflow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow; its connection is closed."""


class ProtocolVersionError(RemoteProtocolError):
    """The peer and we share no protocol version."""

    close_code = 4001


class AuthenticationError(TrioflowError):
    """The scheduler refused our token, or we refused the peer's."""

    close_code = 4003


class InternalError(TrioflowError):
    """A bug in trioflow: one of its own invariants broke. Not a user error, and not to
    be caught and carried on from: the state that raised it may be corrupt."""


class InvalidTransition(InternalError):
    """A core state machine received an event that its state does not allow (a bug)."""


class SlotAccountingError(InternalError):
    """The worker's slot ledger and its CapacityLimiter disagree (a bug)."""


class TaskFailed(TrioflowError):
    """A task raised an exception that cannot be rebuilt in this process.

    Attributes:
        key: the task's key.
        type_name: the qualified name of the remote exception type.
        text: ``str()`` of the remote exception.
        remote_traceback: the formatted traceback from the worker.
    """

    def __init__(self, key: str, type_name: str, text: str, remote_traceback: str = "") -> None:
        super().__init__(key, type_name, text, remote_traceback)
        self.key = key
        self.type_name = type_name
        self.text = text
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return f"task {self.key!r} raised {self.type_name}: {self.text}"


class CancelledError(TrioflowError):
    """The future was cancelled before it finished."""

    def __init__(self, key: str, reason: str = "cancelled") -> None:
        super().__init__(key, reason)
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        return f"task {self.key!r} was {self.reason}"


class KilledWorker(TrioflowError):
    """A task was running on workers that died too many times; it is not tried again.

    Attributes:
        key: the task's key.
        workers: the names of the workers that died while running it.
    """

    def __init__(self, key: str, workers: list[str], reason: str = "") -> None:
        super().__init__(key, workers, reason)
        self.key = key
        self.workers = list(workers)
        self.reason = reason

    def __str__(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"task {self.key!r} was running on {len(self.workers)} worker(s) that died: "
            f"{', '.join(self.workers)}{why}. If the task itself kills its worker (memory, "
            "segfault), fix the task; otherwise raise trioflow-scheduler --allowed-failures "
            "(or allowed_failures= for a local cluster)."
        )


class WorkerLost(TrioflowError):
    """The worker holding a result left the cluster and the result could not be recomputed."""


class DeadlockError(TrioflowError):
    """Every slot is held by a task waiting on work that can never get a slot.

    Raised inside the waiting tasks (and so from the futures that depend on them), with
    a report naming each waiter, the slot it holds and what it waits on.

    Attributes:
        report: the scheduler's multi-line explanation, with the fixes.
    """

    def __init__(self, report: str) -> None:
        super().__init__(report)
        self.report = report

    def __str__(self) -> str:
        return self.report


class ClientClosedError(TrioflowError):
    """The client is closed, or lost its scheduler."""


class SerializationError(TrioflowError, TypeError):
    """An object could not be pickled; the message names it and where it sits."""


class NotInTaskError(TrioflowError, RuntimeError):
    """secede(), rejoin() or worker_client() was called outside a running task."""


class NoClientError(TrioflowError, ValueError):
    """get_client() found no client: not in a task, not in trioflow.run, none open."""


__all__ = [
    "AuthenticationError",
    "CancelledError",
    "ClientClosedError",
    "DeadlockError",
    "InternalError",
    "InvalidTransition",
    "KilledWorker",
    "LocalProtocolError",
    "NoClientError",
    "NotInTaskError",
    "ProtocolError",
    "ProtocolVersionError",
    "RemoteProtocolError",
    "SerializationError",
    "SlotAccountingError",
    "TaskFailed",
    "TrioflowError",
    "WorkerLost",
]


class AddressError(TrioflowError, ValueError):
    """Not a scheduler address; the message gives the form to use."""


class NoWorkersError(TrioflowError):
    """No connected worker could run a task for the scheduler's no-workers timeout.

    Attributes:
        key: the key of the future that failed (a task that depends on the one that
            could not run fails with this error too).
        reason: what was missing, naming the task that could not run ("task 'f-1'
            could not run for 60s: no worker named 'ghost' is connected").
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class SpillError(TrioflowError, OSError):
    """A worker over its memory limit could not write a value to its spill directory (a
    full disk): the value was dropped and its key failed. The message names the key, the
    directory and the reason, and what to do (free space, or ``--local-directory``)."""


#: what trioflow raises when a wait runs out of time (``result(timeout=)``, ``wait``,
#: ``gather``, ``wait_for_workers``): Python's own, under dask's name
#: ``distributed.TimeoutError``, so ``except trioflow.TimeoutError`` reads as in dask
TimeoutError = TimeoutError
