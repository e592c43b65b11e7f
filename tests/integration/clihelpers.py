"""Start real `trioflow-scheduler` / `trioflow-worker` processes for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import trio

PY = sys.executable


async def read_line(proc: trio.Process) -> str:
    """The first line a process prints on stdout."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = await proc.stdout.receive_some(1)
        if not chunk:
            raise RuntimeError(f"process exited before printing a line (code {proc.poll()})")
        data += chunk
    return data.decode().strip()


@contextlib.asynccontextmanager
async def cli_scheduler(*args: str, env: dict | None = None) -> AsyncIterator[tuple[str, trio.Process]]:
    """A scheduler process on 127.0.0.1 (free port); yields its printed address."""
    proc = await trio.lowlevel.open_process(
        [PY, "-m", "trioflow.cli", "scheduler", "--port", "0", "--dashboard-address",
         "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        address = await read_line(proc)
        yield address, proc
    finally:
        await stop(proc)


async def start_worker(address: str, *args: str, env: dict | None = None) -> trio.Process:
    return await trio.lowlevel.open_process(
        [PY, "-m", "trioflow.cli", "worker", address, *args],
        env={**os.environ, **(env or {})},
    )


async def stop(proc: trio.Process) -> None:
    """SIGTERM, then SIGKILL if it lingers; always reaped."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


class Lines:
    """A process's output, line by line, waited on (never polled)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.lines: list[str] = []
        self._rest = b""

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def wait_for(self, text: str, count: int = 1) -> None:
        """Return once ``count`` lines contain ``text`` (counting from the start)."""
        while self.count(text) < count:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise RuntimeError(f"output ended before {count} x {text!r}:\n"
                                   + "\n".join(self.lines))
            *done, self._rest = (self._rest + chunk).split(b"\n")
            self.lines += [d.decode(errors="replace") for d in done]


async def start_logged_worker(address: str, *args: str, env: dict | None = None
                              ) -> tuple[trio.Process, Lines]:
    """A worker logging at info level to a pipe we read."""
    proc = await trio.lowlevel.open_process(
        [PY, "-m", "trioflow.cli", "worker", address, "--log-level", "info", *args],
        stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    return proc, Lines(proc.stderr)


async def start_scheduler(*args: str) -> tuple[str, trio.Process]:
    """A scheduler process (the caller stops it); its printed address."""
    proc = await trio.lowlevel.open_process(
        [PY, "-m", "trioflow.cli", "scheduler", *args], stdout=subprocess.PIPE)
    return await read_line(proc), proc
