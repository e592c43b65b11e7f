"""Reading process facts from ``/proc`` (Linux only; psutil is deliberately not used).

* ``peak_rss_mb(pid)`` is the kernel's high-water mark of resident memory
  (``VmHWM`` in ``/proc/<pid>/status``): the true peak over the process's life, not a
  sample, so it cannot miss a short spike.
* ``ThreadSampler`` reads ``Threads:`` from ``/proc/<pid>/status`` of each watched
  process every ``interval`` seconds from a background thread of the benchmark driver
  (nothing runs inside the measured workers). A burst of threads living shorter than
  the interval can be missed; both systems keep their task threads alive for reuse, so
  in practice the peak is a plateau and is seen.
* ``busy_cpu_seconds()`` and ``own_cpu_seconds()`` let the harness tell how much CPU
  *other* programs used while a run was going (the machine may be shared).
* ``session_pids(sid)`` lists the processes of a session, so the harness can find and
  kill by pid whatever a benchmark run left behind.

Everything returns None (or an empty result) instead of raising when a process is gone
or ``/proc`` is unavailable.
"""

from __future__ import annotations

import os
import threading


def _status_field(pid: int, field: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size of ``pid`` in MB (10^6 bytes), or None if unknown."""
    value = _status_field(pid, "VmHWM")
    if value is None:
        return None
    kib = int(value.split()[0])
    return round(kib * 1024 / 1e6, 1)


def thread_count(pid: int) -> int | None:
    """The number of threads ``pid`` has now, or None if it is gone."""
    value = _status_field(pid, "Threads")
    return None if value is None else int(value)


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and of its reaped children so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its reaped descendants (runs that ended)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def session_pids(sid: int) -> list[int]:
    """Pids of every live process in session ``sid`` (field 6 of ``/proc/<pid>/stat``)."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name (field 2) may hold spaces; it ends at the last ')'
        fields = stat[stat.rfind(")") + 2:].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            found.append(int(entry))
    return found


class ThreadSampler:
    """Sample the thread count of some processes until stopped; keep the peaks.

    Use as ``with ThreadSampler(pids) as sampler: ...``; afterwards ``peaks`` maps each
    pid to the largest ``Threads:`` value seen and ``baseline`` to the first one.
    """

    def __init__(self, pids: list[int], interval: float = 0.005) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.baseline: dict[int, int] = {}
        self.peaks: dict[int, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-thread-sampler",
                                        daemon=True)

    def _sample(self) -> None:
        for pid in self.pids:
            n = thread_count(pid)
            if n is None:
                continue
            self.baseline.setdefault(pid, n)
            if n > self.peaks.get(pid, 0):
                self.peaks[pid] = n
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> ThreadSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def summary(self) -> dict[str, int | None]:
        """Peak and baseline thread counts of the busiest watched process."""
        if not self.peaks:
            return {"peak_threads": None, "baseline_threads": None}
        pid = max(self.peaks, key=self.peaks.__getitem__)
        return {"peak_threads": self.peaks[pid], "baseline_threads": self.baseline.get(pid)}
