"""Worker reconnects with real processes: every attempt has its own deadline, bounded by
what is left of --death-timeout; SIGTERM works while connecting; a restarted, reset,
silent or frozen scheduler costs at most one attempt."""

from __future__ import annotations

import contextlib
import signal

import pytest
import trio

import trioflow
from trioflow.testing.hostile import reset

from .clihelpers import start_logged_worker, start_scheduler, stop

pytestmark = pytest.mark.slow

#: short attempts keep these tests quick; the bounds below are several attempts wide
ATTEMPT = "1"


class FakeScheduler:
    """A TCP port on 127.0.0.1 that resets every connection (``mode="reset"``) or
    accepts it and never answers (``"silent"``). Counts connections, waitably."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self._changed = trio.Event()
        self.port = 0
        self._held: list[trio.SocketStream] = []

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started()

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        self._changed.set()
        self._changed = trio.Event()
        if self.mode == "reset":
            reset(stream)
            return
        self._held.append(stream)
        with contextlib.suppress(trio.BrokenResourceError):
            while await stream.receive_some(4096):
                pass  # read and ignore: the peer sees a scheduler that never answers

    async def wait_connections(self, n: int) -> None:
        while self.connections < n:
            await self._changed.wait()


async def _fake(nursery, mode):
    fake = FakeScheduler(mode)
    await nursery.start(fake.serve)
    return fake


@pytest.mark.parametrize("mode", ["reset", "silent"])
async def test_death_timeout_holds_against_a_scheduler_that_resets_or_never_answers(mode):
    async with trio.open_nursery() as nursery:
        fake = await _fake(nursery, mode)
        worker, out = await start_logged_worker(
            f"ws://127.0.0.1:{fake.port}", "--death-timeout", "3", "--connect-timeout", ATTEMPT)
        try:
            # attempts end (and are retried) instead of hanging; then the worker gives up
            await fake.wait_connections(2)
            with trio.fail_after(15):
                await worker.wait()
            assert worker.returncode == 1
            await out.wait_for("could not reach the scheduler")
        finally:
            await stop(worker)
        nursery.cancel_scope.cancel()


async def test_a_reset_before_the_answer_ends_the_attempt_at_once():
    """A reset is noticed when it comes, not at the attempt's deadline: with a 30 s
    attempt, many attempts fit in a few seconds."""
    async with trio.open_nursery() as nursery:
        fake = await _fake(nursery, "reset")
        worker, _ = await start_logged_worker(
            f"ws://127.0.0.1:{fake.port}", "--death-timeout", "60", "--connect-timeout", "30")
        try:
            with trio.fail_after(20):
                await fake.wait_connections(5)
        finally:
            await stop(worker)
        nursery.cancel_scope.cancel()


async def test_sigterm_while_connecting_stops_the_worker():
    async with trio.open_nursery() as nursery:
        fake = await _fake(nursery, "silent")
        worker, _ = await start_logged_worker(
            f"ws://127.0.0.1:{fake.port}", "--death-timeout", "60", "--connect-timeout", "60")
        try:
            await fake.wait_connections(1)  # mid-attempt: no answer will ever come
            worker.send_signal(signal.SIGTERM)
            with trio.fail_after(10):  # far less than the attempt's 60 s
                await worker.wait()
            assert worker.returncode == 0
        finally:
            await stop(worker)
        nursery.cancel_scope.cancel()


async def _served(address: str, workers: int = 1) -> None:
    async with trioflow.AsyncClient(address) as client:
        await client.wait_for_workers(workers, timeout=30)
        assert await client.submit(abs, -2) == 2


async def test_worker_rejoins_a_scheduler_killed_and_restarted_on_the_same_port():
    address, sched = await start_scheduler("--port", "0")
    port = address.rsplit(":", 1)[1]
    worker, out = await start_logged_worker(address, "--death-timeout", "10",
                                            "--connect-timeout", ATTEMPT)
    try:
        await out.wait_for("joined")
        for i in range(3):
            sched.kill()  # SIGKILL: no goodbye
            await sched.wait()
            await out.wait_for("lost the scheduler", i + 1)
            address, sched = await start_scheduler("--port", port)
            # within one attempt (1 s) and a back-off (at most 1 s) of its coming back
            with trio.fail_after(6):
                await out.wait_for("joined", i + 2)
            await _served(address)
        assert worker.returncode is None
    finally:
        await stop(worker)
        await stop(sched)


async def test_worker_rejoins_a_scheduler_stopped_then_continued():
    address, sched = await start_scheduler("--port", "0", "--peer-timeout", "2")
    worker, out = await start_logged_worker(address, "--death-timeout", "30",
                                            "--connect-timeout", ATTEMPT, "--peer-timeout", "2")
    try:
        await out.wait_for("joined")
        sched.send_signal(signal.SIGSTOP)
        # the worker notices the silence, then its attempts time out one by one
        await out.wait_for("scheduler not reachable", 2)
        sched.send_signal(signal.SIGCONT)
        with trio.fail_after(6):  # one attempt (1 s) and a back-off (1 s), and slack
            await out.wait_for("joined", 2)
        await _served(address)
    finally:
        with contextlib.suppress(ProcessLookupError):
            sched.send_signal(signal.SIGCONT)
        await stop(worker)
        await stop(sched)


async def test_a_scheduler_answering_garbage_costs_an_attempt_not_the_worker():
    from trio_websocket import serve_websocket

    answered = []
    changed = trio.Event()

    async def garbage(request):
        nonlocal changed
        ws = await request.accept()
        await ws.get_message()  # the worker's Hello
        await ws.send_message(b"\x00 not a frame")
        answered.append(1)
        changed.set()
        changed = trio.Event()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, garbage, "127.0.0.1", 0, None)
        worker, _ = await start_logged_worker(f"ws://127.0.0.1:{server.port}",
                                              "--death-timeout", "60")
        try:
            while len(answered) < 3:  # it came back after each bad answer
                await changed.wait()
            assert worker.returncode is None
        finally:
            await stop(worker)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("mode", ["reset", "silent", "no_welcome"])
async def test_a_client_connection_attempt_has_one_deadline(mode):
    """TCP connect, upgrade and Welcome share one deadline: a scheduler that resets,
    never answers the upgrade, or upgrades and never welcomes costs at most that."""
    from trio_websocket import serve_websocket

    from trioflow.net.connection import open_connection
    from trioflow.net.handshake import expect_welcome

    async def mute(request):
        ws = await request.accept()
        await trio.sleep_forever()
        del ws

    async with trio.open_nursery() as nursery:
        if mode == "no_welcome":
            server = await nursery.start(serve_websocket, mute, "127.0.0.1", 0, None)
            port = server.port
        else:
            port = (await _fake(nursery, mode)).port
        with trio.fail_after(10):  # the deadline below is 0.5 s
            with pytest.raises(trioflow.ClientClosedError):
                async with open_connection(f"ws://127.0.0.1:{port}", name="test",
                                           connect_timeout=0.5) as conn:
                    await expect_welcome(conn)
        nursery.cancel_scope.cancel()
