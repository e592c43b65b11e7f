"""A bug in the scheduler core stops the scheduler; it does not just drop a peer."""

from __future__ import annotations

import logging
import sys

import pytest
import trio

import trioflow
from trioflow import protocol as p
from trioflow.core.events import PeerLeft
from trioflow.core.scheduler import machine
from trioflow.errors import InternalError, InvalidTransition
from trioflow.net.scheduler_server import SchedulerServer

from .tasks import inc

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in leaves(e)]
    return [exc]


@pytest.fixture
def broken_handler(monkeypatch):
    """Make the core raise InvalidTransition when it handles message type ``cls``."""

    def install(cls):
        def broken(state, peer_id, msg):
            raise InvalidTransition(f"injected while handling {type(msg).__name__}")

        monkeypatch.setitem(machine.HANDLERS, cls, broken)

    return install


def critical_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.CRITICAL]


async def test_an_internal_error_for_a_websocket_peer_stops_the_scheduler(broken_handler, caplog):
    broken_handler(p.SubmitTask)
    server = SchedulerServer()
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(server.serve, "127.0.0.1", 0)
            async with trioflow.AsyncClient(address) as client:
                client.submit(inc, 1)
                with trio.fail_after(10):  # (without the fix: the peer is dropped, no stop)
                    await trio.sleep_forever()  # ended by the scheduler stopping
    errors = leaves(info.value)
    assert any(isinstance(e, InternalError) for e in errors), errors
    assert "injected while handling SubmitTask" in str(server.core.failure)
    (line,) = critical_lines(caplog)
    assert "stopping the scheduler" in line.getMessage()
    assert "injected while handling SubmitTask" in line.exc_text
    # the core refuses to go on from a state that may be corrupt
    with pytest.raises(InvalidTransition, match="stopped after an internal error"):
        server.core.handle(PeerLeft("nobody"))


async def test_an_internal_error_for_a_local_peer_stops_the_scheduler(broken_handler, caplog):
    broken_handler(p.StatusRequest)
    server = SchedulerServer()
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, "127.0.0.1", 0)
            async with server.open_local_peer("probe") as conn:
                conn.send(p.Hello("client", "probe", list(p.SUPPORTED_VERSIONS)))
                (welcome,) = await conn.receive()
                assert isinstance(welcome, p.Welcome)
                conn.send(p.StatusRequest(1))
                with trio.fail_after(10):  # (without the fix: the peer is dropped, no stop)
                    await trio.sleep_forever()  # ended by the scheduler stopping
    assert any(isinstance(e, InternalError) for e in leaves(info.value))
    (line,) = critical_lines(caplog)
    assert "injected while handling StatusRequest" in line.exc_text


async def test_a_peer_error_that_is_not_a_bug_still_drops_only_that_peer(monkeypatch, caplog):
    def flaky(state, peer_id, msg):
        raise RuntimeError("not the core's invariant")

    monkeypatch.setitem(machine.HANDLERS, p.StatusRequest, flaky)
    async with trio.open_nursery() as nursery:
        server = SchedulerServer()
        await nursery.start(server.serve, "127.0.0.1", 0)
        async with server.open_local_peer("probe") as conn:
            conn.send(p.Hello("client", "probe", list(p.SUPPORTED_VERSIONS)))
            await conn.receive()
            conn.send(p.StatusRequest(1))
            await server.wait_for(lambda: not server.state.peers)
        assert server.core.failure is None and not critical_lines(caplog)
        nursery.cancel_scope.cancel()
