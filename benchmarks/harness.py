"""Running one benchmark process with a hard timeout, and cleaning up after it.

Each run is a subprocess started in a new session (``start_new_session=True``), so it
and every process it starts (scheduler threads live in it; workers, nannies and their
helpers are its descendants) share one session id: the child's pid. The harness

* reads the child's stdout for the ``BENCH-RESULT`` line (the child prints it before
  tearing its cluster down),
* kills the whole process group with SIGKILL when the run exceeds its timeout (a hang
  is reported as ``timeout``, never waited out),
* gives a finished run ``teardown_timeout`` seconds to exit, then kills it,
* finally kills, by pid, any process still left in the session (a worker that outlived
  its cluster) and reports those pids as ``strays``.

stderr goes to a temporary file (dask logs a lot; a full pipe would block the child)
and its tail is kept for failed runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procfs import (
    busy_cpu_seconds,
    cpu_seconds,
    own_cpu_seconds,
    peak_rss_mb,
    session_pids,
    thread_count,
)

REPO = Path(__file__).resolve().parent.parent
MARKER = "BENCH-RESULT "

#: the packages of this repository that the runs import from source
OWN_PACKAGES = ("trioflow", "benchmarks")


def compile_bytecode() -> list[str]:
    """Byte-compile this repository's packages into their ``__pycache__`` (gitignored).

    An installed trioflow has its bytecode (pip compiles a wheel's modules at install
    time), as dask and Ray have theirs in site-packages. A source checkout run with
    ``PYTHONDONTWRITEBYTECODE=1`` never writes it, so without this every scheduler and
    worker process would compile all of trioflow from source at start-up (about 0.1 s of
    CPU each), a cost no installed system pays. Returns the directories compiled.
    """
    import compileall
    import importlib.util

    done = []
    for name in OWN_PACKAGES:
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(location, quiet=1)
            done.append(str(location))
    return done


@dataclass
class Outcome:
    """How one run went.

    Attributes:
        status: ``"ok"``, ``"error"`` (the run failed or printed no result) or
            ``"timeout"`` (killed after ``timeout`` seconds).
        result: the child's JSON payload, if it printed one.
        spawned_at: ``time.monotonic()`` just before the child was spawned.
        wall_s: spawn -> result line (or -> kill / exit without result).
        teardown_s: result line -> process exit; None if it had to be killed.
        stderr_tail: the last lines of stderr, for failed runs.
        strays: pids still alive in the run's session after it ended (then killed).
        at_kill: for a run killed on timeout, what its processes looked like just
            before: ``peak_threads`` and ``rss_workers_mb`` of the processes it started
            (its workers), ``rss_client_mb`` of the run's own process.
        foreign_load: cores' worth of CPU that *other* programs used during the run
            (machine busy time minus this process's and its reaped children's CPU,
            over the run's wall time); None if unknown.
    """

    status: str
    result: dict[str, Any] | None
    spawned_at: float
    wall_s: float
    teardown_s: float | None = None
    stderr_tail: str = ""
    strays: list[int] = field(default_factory=list)
    foreign_load: float | None = None
    at_kill: dict[str, Any] | None = None


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_strays(sid: int, grace: float) -> list[int]:
    deadline = time.monotonic() + grace
    left = session_pids(sid)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = session_pids(sid)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return left


def _snapshot(sid: int) -> dict[str, Any]:
    """Threads and peak RSS of a run's processes (sid = the run's own pid)."""
    others = [pid for pid in session_pids(sid) if pid != sid]
    threads = [n for n in map(thread_count, others) if n is not None]
    return {"peak_threads": max(threads, default=None),
            "rss_workers_mb": [peak_rss_mb(pid) for pid in others],
            "rss_client_mb": peak_rss_mb(sid),
            # killed with their parent, these are reaped by init, not by us: count
            # their CPU now, or it would look like other programs' load
            "cpu_s": sum(map(cpu_seconds, others))}


def run_isolated(argv: list[str], timeout: float, teardown_timeout: float = 30.0,
                 stray_grace: float = 2.0) -> Outcome:
    """Run ``argv`` from the repo root; wait at most ``timeout`` s for its result line."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    box: dict[str, Any] = {}
    got = threading.Event()
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errfile:
        busy0, own0 = busy_cpu_seconds(), own_cpu_seconds()
        spawned_at = time.monotonic()
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=errfile, text=True,
                                start_new_session=True)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(MARKER) and "result" not in box:
                    box["at"] = time.monotonic()
                    try:
                        box["result"] = json.loads(line[len(MARKER):])
                    except ValueError as exc:
                        box["result"] = {"error": f"unreadable result line: {exc}"}
                    got.set()
            got.set()  # end of output: no result is coming

        reader = threading.Thread(target=read, name="bench-reader", daemon=True)
        reader.start()
        timed_out = not got.wait(max(0.0, spawned_at + timeout - time.monotonic()))
        teardown_s = None
        at_kill = None
        if timed_out:
            at_kill = _snapshot(proc.pid)
            _kill_group(proc.pid)
        try:
            proc.wait(timeout=teardown_timeout)
            if "at" in box and not timed_out:
                teardown_s = time.monotonic() - box["at"]
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
        reader.join(5)
        strays = _kill_strays(proc.pid, stray_grace)
        busy1, elapsed = busy_cpu_seconds(), time.monotonic() - spawned_at
        ours = own_cpu_seconds() - own0 + (at_kill.pop("cpu_s") if at_kill else 0.0)
        foreign = (None if busy0 is None or busy1 is None else
                   max(0.0, (busy1 - busy0) - ours) / elapsed)
        errfile.seek(0)
        stderr_tail = "\n".join(errfile.read().splitlines()[-25:])
    result = box.get("result")
    end = box.get("at", time.monotonic())
    if timed_out:
        status = "timeout"
    elif result is None or "error" in result:
        status = "error"
    else:
        status = "ok"
    return Outcome(status, result, spawned_at, end - spawned_at, teardown_s,
                   stderr_tail if status != "ok" else "", strays,
                   None if foreign is None else round(foreign, 2), at_kill)
