"""Task functions shared by every system: no-ops, data producers and consumers.

Workers import this module to unpickle the functions by reference (both systems pickle
importable functions by name), so it imports nothing heavy: numpy only inside the
function that needs it.
"""

from __future__ import annotations

import os
from typing import Any

#: "100 MB" in the data benchmarks is 10^8 bytes; MB/s figures use the same unit.
MB = 1_000_000


def noop(x: Any = None) -> Any:
    """Return the argument: the cheapest task that still carries an argument and a result."""
    return x


def add(a: int, b: int) -> int:
    """The reduction step of the delayed tree."""
    return a + b


def random_bytes(nbytes: int) -> bytes:
    """Incompressible bytes (so no transport can win by compressing them)."""
    return os.urandom(nbytes)


def random_array(nbytes: int) -> Any:
    """A float64 numpy array of ``nbytes`` bytes of random values."""
    import numpy as np

    return np.random.default_rng(0).random(nbytes // 8)


def size_of(data: Any) -> int:
    """Bytes in ``data`` (bytes or a numpy array): proves the consumer received it all."""
    nbytes = getattr(data, "nbytes", None)
    return int(nbytes) if nbytes is not None else len(data)


def pid() -> int:
    """The pid of the worker process that runs this."""
    return os.getpid()
