"""The scheduler file, as dask's: ``trioflow-scheduler --scheduler-file PATH`` writes
where it listens into ``PATH`` (JSON, ``"address"`` among other fields), and
``trioflow-worker --scheduler-file PATH`` and ``Client(scheduler_file=PATH)`` read it
there. On a shared file system (an HPC job whose scheduler and workers start at once)
nobody needs to know the address in advance: a reader waits for the file to appear.

The file is written whole and then renamed into place, so a reader never sees half of
it. It holds no secret (the token travels separately) and is readable by its owner
only anyway, like the token file beside it usually is.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Any

#: how often a reader looks again for a scheduler file that is not there yet
POLL_INTERVAL = 0.1


def write_scheduler_file(path: str | os.PathLike[str], address: str, scheduler_id: str,
                         dashboard: str = "") -> None:
    """Write (atomically) where the scheduler listens.

    Raises:
        OSError: the file cannot be written.
    """
    target = pathlib.Path(path)
    info: dict[str, Any] = {"type": "Scheduler", "id": scheduler_id, "address": address,
                            "dashboard": dashboard, "started": time.time()}
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(part, target)


def read_scheduler_file(path: str | os.PathLike[str], timeout: float) -> str:
    """The address in scheduler file ``path``, waiting up to ``timeout`` seconds for it
    to appear (blocking this thread).

    Raises:
        TimeoutError: no such file after ``timeout`` seconds.
        ValueError: the file is not a scheduler file (no ``"address"``).
    """
    target = pathlib.Path(path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = target.read_text()
            break
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no scheduler file at {str(target)!r} after {timeout:g}s: start "
                    f"trioflow-scheduler --scheduler-file {target} (or check the path)"
                ) from None
            time.sleep(POLL_INTERVAL)
    try:
        address = json.loads(text)["address"]
    except (ValueError, KeyError, TypeError):
        address = None
    if not isinstance(address, str) or not address:
        raise ValueError(f"{str(target)!r} is not a scheduler file: it has no \"address\" "
                         "(trioflow-scheduler --scheduler-file writes one)")
    return address
