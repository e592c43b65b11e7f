"""Starting a benchmark cluster from its systems' own command-line programs.

The default benchmark shape (see ``benchmarks.systems``) is the one the issues quote:
the scheduler and each worker is a separate process started from the system's CLI
(``trioflow-scheduler``/``trioflow-worker``, ``dask scheduler``/``dask worker``), and
the benchmark process holds only the client, which connects by address. So the client
and the scheduler do not share a GIL, as they do not in a deployed cluster.

``process_cluster`` picks a free port, starts the scheduler on it and the workers
pointed at it at the same time (as a deployment with a known port does; the workers
connect once the scheduler listens), reads the address the scheduler prints once
listening (a line on stdout or stderr, whichever the system uses) and checks it; the
caller then waits for the workers to join through its client (``wait_for_workers``),
so readiness is never a sleep. Leaving it stops the
workers first (SIGTERM, then SIGKILL after a grace period), then the scheduler. Output
the processes write after startup is copied to this process's stderr (the harness keeps
its tail for failed runs) by a reader thread, so a full pipe never blocks them.

Cancellation: an exception (or KeyboardInterrupt) inside the ``with`` block still stops
every process started here.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO

#: seconds to wait for the scheduler's address line, and for a process to exit on SIGTERM
STARTUP_TIMEOUT = 60.0
STOP_GRACE = 10.0
#: starts tried before giving up when the chosen port is taken under our feet
ATTEMPTS = 3


def _copy_rest(stream: IO[str]) -> None:
    for line in stream:
        sys.stderr.write(line)


def _read_address(proc: subprocess.Popen[str], stream: IO[str], pattern: re.Pattern[str],
                  what: str) -> str:
    """The first match of ``pattern`` in the lines of ``stream`` (group 1); the rest of
    the stream is copied to stderr from then on. Raises if the process exits first or
    prints nothing matching within ``STARTUP_TIMEOUT`` (the process is then killed)."""
    box: dict[str, str] = {}
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in stream:
            match = pattern.search(line)
            if match and "address" not in box:
                box["address"] = match.group(1)
                found.set()
                _copy_rest(stream)
                return
            seen.append(line)
        found.set()

    threading.Thread(target=read, name=f"{what}-output", daemon=True).start()
    if not found.wait(STARTUP_TIMEOUT) or "address" not in box:
        proc.kill()
        raise RuntimeError(f"{what} printed no address (exit status {proc.poll()}); its "
                           f"output:\n{''.join(seen[-20:])}")
    return box["address"]


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (bound to port 0, then released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def process_cluster(scheduler_argv: Callable[[int], list[str]], address_on: str, pattern: str,
                    address_for: Callable[[int], str],
                    worker_argv: Callable[[str, int], list[str]], workers: int,
                    what: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start ``scheduler_argv(port)`` on a free port and, at the same time, ``workers``
    processes ``worker_argv(address_for(port), i)`` (they connect once it listens: both
    systems' workers retry), as a deployment with a known port starts; then read the
    scheduler's address (``pattern``'s group 1 on its stream ``address_on``,
    ``"stdout"`` or ``"stderr"``), check it is that one, and yield it. Workers' output
    goes to stderr; ``env`` is added to every process's environment.

    The port is free when chosen; if another program takes it before the scheduler
    binds it, the scheduler exits without an address and the whole start is tried
    again on a new port (up to ``ATTEMPTS`` times)."""
    environ = {**os.environ, **(env or {})}
    pipe = {"stdout": subprocess.PIPE if address_on == "stdout" else subprocess.DEVNULL,
            "stderr": subprocess.PIPE if address_on == "stderr" else None}
    started: list[subprocess.Popen[str]] = []
    try:
        for attempt in range(ATTEMPTS):
            port = free_port()
            expected = address_for(port)
            scheduler = subprocess.Popen(scheduler_argv(port), stdin=subprocess.DEVNULL,
                                         text=True, env=environ,
                                         **pipe)  # type: ignore[call-overload]
            started = [scheduler]
            for i in range(workers):
                started.insert(0, subprocess.Popen(
                    worker_argv(expected, i), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, text=True, env=environ))
            stream = scheduler.stdout if address_on == "stdout" else scheduler.stderr
            assert stream is not None
            try:
                address = _read_address(scheduler, stream, re.compile(pattern),
                                        f"{what} scheduler")
            except RuntimeError:
                if attempt + 1 == ATTEMPTS or scheduler.poll() is None:
                    raise
                _stop(started)  # (its port was taken meanwhile: again, on another)
                continue
            if address != expected:
                raise RuntimeError(f"{what} scheduler listens on {address}, not on the "
                                   f"{expected} its workers were given")
            break
        yield address
    finally:
        # workers first (started holds them before the scheduler), so they leave quietly
        _stop(started[:-1])
        _stop(started[-1:])
