"""The worker's reports of its task threads and memory to the scheduler (for the
dashboard): a ``WorkerThreads`` message whenever they changed, checked once a second.

Cancellation: the loop ends with the connection's nursery.
"""

from __future__ import annotations

import os

import trio

from .. import protocol as p
from ..config import WORKER_THREADS_INTERVAL
from .connection import PeerConnection
from .slots import SlotThreads

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """This process's resident memory in bytes (Linux ``/proc``; 0 where unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


async def report_threads(threads: SlotThreads, conn: PeerConnection,
                         interval: float = WORKER_THREADS_INTERVAL) -> None:
    """Send ``WorkerThreads`` on ``conn`` when the counts (or the memory, by more than
    1 MiB) changed since the last report."""
    last: tuple[int, int, int, int] | None = None
    while not conn.closed:
        now = (threads.threads, threads.idle, threads.overflow, resident_bytes())
        if last is None or now[:3] != last[:3] or abs(now[3] - last[3]) > 1 << 20:
            conn.send(p.WorkerThreads(*now))
            last = now
        await trio.sleep(interval)
