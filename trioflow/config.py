"""Every default trioflow uses, in one place: constants only, no behaviour.

The scheduler, workers, clients and the CLIs all read their defaults from here, so a
default changes in one line and the roles cannot disagree. Each entry says what it
bounds and, where it was measured, why it has its value.
"""

from __future__ import annotations

#: Results and scatters up to this many bytes (pickled) travel inline with the
#: scheduler's messages; larger ones stay where they are and move over the bulk data
#: path, worker to worker or to the client. The scheduler's value wins (``Welcome``).
INLINE_LIMIT = 64 * 1024

#: Worker deaths a task may live through before it fails with ``KilledWorker``.
ALLOWED_FAILURES = 3

#: A peer silent this long (no frame, not even a heartbeat) counts as gone, in seconds.
#: Every role heartbeats each ``HEARTBEAT_INTERVAL``, so only a dead link or a frozen
#: process is ever this quiet.
PEER_TIMEOUT = 30.0

#: Seconds a stopping worker gives its plugins' teardowns (``Client.register_plugin``).
PLUGIN_TEARDOWN_TIMEOUT = 10.0

#: Thresholds of Python's cyclic garbage collector in the processes trioflow owns (the
#: ``trioflow-scheduler`` and ``trioflow-worker`` CLIs; never a user's process), which
#: also freeze what they loaded at start-up out of every collection
#: (``cli.common.tune_gc``). A scheduler allocates about ten container objects per task
#: (its record, messages, lists): at Python's default of 700 it collected every ~70 tasks,
#: and a full collection re-scanned the ~50,000 objects of its imports; together 3.3 us
#: of its ~28 us per task in a flat map, 0.8 us with these.
GC_THRESHOLDS = (10_000, 10, 10)

#: A connection quiet for this long sends a Heartbeat (seconds).
HEARTBEAT_INTERVAL = 1.0

#: A peer that does not take a frame within this many seconds is disconnected.
SEND_TIMEOUT = 30.0

#: Seconds from the TCP accept to a complete HTTP upgrade request (TLS included).
UPGRADE_TIMEOUT = 5.0

#: Seconds from the upgrade to a complete, accepted Hello.
HELLO_TIMEOUT = 5.0

#: Seconds one connection attempt of a client or worker may take, from the TCP connect
#: to the Welcome (a worker's is also bounded by what is left of its death timeout).
CONNECT_TIMEOUT = 10.0

#: Largest WebSocket message either side accepts once the peer is known.
MAX_MESSAGE_SIZE = 512 * 1024 * 1024

#: Largest first frame (Hello) the scheduler accepts before knowing who the peer is.
MAX_HELLO_SIZE = 64 * 1024

#: Seceded ("parked") threads a worker allows on top of its slots.
MAX_PARKED_THREADS = 256

#: Seconds a worker keeps trying to reach its scheduler before it exits.
DEATH_TIMEOUT = 60.0

#: Seconds a draining worker (SIGTERM) lets running tasks finish.
DRAIN_TIMEOUT = 30.0

#: Seconds a blocking call on a client (``status``) waits for the scheduler's answer.
CLIENT_CALL_TIMEOUT = 30.0

#: Seconds allowed for all workers of a local cluster to join.
STARTUP_TIMEOUT = 60.0

#: Seconds a local cluster's worker process survives without its scheduler.
LOCAL_DEATH_TIMEOUT = 5.0

#: A fetch that fails because the holder vanished is tried this often in all (the
#: scheduler may not have noticed yet; once it has, the key is recomputed or lost).
FETCH_ATTEMPTS = 6

#: Fractions of a worker's ``--memory-limit`` (dask's defaults and meanings): above
#: ``target`` (of the bytes its values take) least-recently-used values are spilled to
#: disk; above ``spill`` (of its resident memory) it spills too, and no new run starts
#: until its values are back under it; above ``pause`` no new run starts; above
#: ``terminate`` the worker exits with ``EXIT_RESTART``.
MEMORY_TARGET = 0.6
MEMORY_SPILL = 0.7
MEMORY_PAUSE = 0.8
MEMORY_TERMINATE = 0.95

#: Seconds between two looks at a worker's resident memory (``/proc/self/statm``).
MEMORY_MONITOR_INTERVAL = 0.1


#: Finished runs the scheduler remembers (key, worker, thread, start, duration) for the
#: dashboard's task stream and performance reports; older ones are forgotten.
RUN_LOG_LENGTH = 100_000

#: Events the scheduler keeps per topic (``Client.log_event``; older ones are
#: forgotten, as dask's ``events-log-length``), and topics it keeps at most.
EVENTS_PER_TOPIC = 10_000
EVENT_TOPICS = 1_000

#: Where ``trioflow-scheduler`` serves its dashboard (a taken port falls back to a free
#: one); local clusters use port 0.
DASHBOARD_ADDRESS = "127.0.0.1:8787"

#: Seconds between two dashboard updates pushed to browsers.
DASHBOARD_INTERVAL = 0.5

#: Seconds between a worker's checks of its thread counts and memory (it reports them
#: to the scheduler, for the dashboard, when they changed).
WORKER_THREADS_INTERVAL = 1.0
#: Exit status by which a worker asks its nanny for a fresh process (the memory limit
#: uses it). 75 is EX_TEMPFAIL: "try again". Restarts asked for this way are not deaths.
EXIT_RESTART = 75

#: Exit status of a supervised worker (``--supervised``, set by its nanny) that stopped
#: for good: it gave up on an unreachable scheduler, or was refused (token, protocol
#: version). Restarting cannot help, so its nanny stops too. (Unsupervised, the same
#: cases exit with status 1.)
EXIT_GIVE_UP = 4

#: A nanny gives up on a worker that died more than this many times within
#: ``NANNY_RESTART_WINDOW`` seconds: something kills it at start, restarting cannot help.
NANNY_MAX_RESTARTS = 10
NANNY_RESTART_WINDOW = 60.0

#: Pause before a nanny restarts a dead worker, doubling per death in a row (seconds).
#: The first is short: a task that kills its worker should meet KilledWorker quickly.
NANNY_FIRST_DELAY = 0.1
NANNY_MAX_DELAY = 5.0

#: A worker process that lived this long (seconds) resets its nanny's pauses.
NANNY_STABLE_AFTER = 10.0

#: Seconds between SIGTERM and SIGKILL when a nanny or a local cluster stops a worker.
NANNY_STOP_GRACE = 3.0

#: Seconds a queued task may go without any connected worker able to run it (none at
#: all, none with the name it is restricted to) before it fails with NoWorkersError.
#: Long enough for a nanny to restart a worker (well under a second) or for an operator
#: to start one by hand; short enough that a typo in ``workers=`` or a cluster whose
#: workers all died surfaces within a minute instead of hanging. 0 or inf: never.
NO_WORKERS_TIMEOUT = 60.0

#: The scheduler's clock ticks for its core's timers at most this far apart (seconds).
TICK_INTERVAL = 1.0

#: A child submitted from a running task is queued on its parent's worker (no scheduler
#: round trip) while that worker has fewer than this many runs queued per slot; beyond
#: it, children go through the scheduler, which spreads them. Idle workers steal half a
#: queue at a time either way, so this bounds one worker's queue, not parallelism.
#: Measured on fan-out of 1,000 no-ops (2 workers x 1 thread): 64 gave 7-11k tasks/s
#: (the overflow pays the round trip it avoids), 1024 gave 18-19k.
LOCAL_QUEUE_PER_SLOT = 1024

#: a worker keeps the slot a sync run gives back (secede, worker_client) free until the
#: run waits, and the slot freed by the child that wakes a waiting run free until that
#: run takes it back (``core.worker.WorkerState.secede``); a run that does something
#: else meanwhile holds up the queued runs there for two ticks of this clock (seconds)
#: at most. Measured: a 2 ms tick cost 3.4% of a fib worker's CPU (about 60 us a tick)
KEPT_SLOT_TICK = 0.01

#: most runs one task thread nests on its stack by helping (a waiting task runs the
#: jobs of the keys it waits on, ``net/slots.py``); a deeper job goes to another
#: thread. About ten frames a level: a chain of 120 seceded waits on one slot, each
#: child run on its parent's thread, reached Python's recursion limit (1000) inside a
#: ledger event
MAX_HELPING_NESTING = 32

#: ``wait_for_workers`` asks the scheduler again after this many seconds, then twice as
#: long each time up to ``WAIT_FOR_WORKERS_LAST_POLL``: the workers of a cluster that is
#: starting join within milliseconds, and a fixed 50 ms poll cost start-up 25 ms on average
WAIT_FOR_WORKERS_FIRST_POLL = 0.005
WAIT_FOR_WORKERS_LAST_POLL = 0.05
