"""A live scheduler under fire: garbage and arbitrary well-formed messages over a real
WebSocket. Each connection must be answered or closed, the server must never crash (nor
log a crashed handler), and a normal client must be served afterwards."""

from __future__ import annotations

import logging

import attrs
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, open_websocket_url

import trioflow
from trioflow import protocol as p
from trioflow.testing import Program
from trioflow.testing.live import run_program
from trioflow.testing.profiles import fuzz_settings
from trioflow.testing.wire import frames, garbage_frames

#: seconds for one whole example (cluster start, attacks, the honest client)
DEADLINE = 30


@attrs.frozen
class Attack:
    """One hostile connection: an optional Hello, then raw frames."""

    hello: str | None
    sent: tuple[bytes | str, ...]


def attacks() -> st.SearchStrategy[Attack]:
    payload = frames() | garbage_frames() | st.text(max_size=40)
    return st.builds(Attack, st.sampled_from([None, "client", "worker"]),
                     st.lists(payload, max_size=4).map(tuple))


class _Crashes(logging.Handler):
    """Collects log records of peer handlers that raised (the server logs and goes on)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _attack(address: str, attack: Attack) -> None:
    try:
        async with open_websocket_url(address) as ws:
            if attack.hello is not None:
                await ws.send_message(p.encode_frame([p.Hello(
                    attack.hello, "fuzz", [1], "", 2, "ws://127.0.0.1:9")]))
            for data in attack.sent:
                await ws.send_message(data)
            # answer or close: a status request gets its reply, or the connection ends
            await ws.send_message(p.encode_frame([p.StatusRequest(4242)]))
            while True:
                frame = await ws.get_message()
                if isinstance(frame, bytes) and any(
                        type(m) is p.StatusReply and m.request_id == 4242
                        for m in _decode(frame)):
                    return
    except ConnectionClosed:
        return


def _decode(frame: bytes) -> list[object]:
    try:
        return p.decode_frame(frame)
    except trioflow.RemoteProtocolError:
        return []


async def _siege(attacks_: list[Attack]) -> None:
    with trio.fail_after(DEADLINE):
        async with trioflow.open_local_cluster(1, 1, processes=False) as cluster:
            for attack in attacks_:
                with trio.fail_after(5):  # a connection left hanging is a failure
                    await _attack(cluster.address, attack)
            async with trioflow.AsyncClient(cluster.address) as client:
                outcome = await run_program(client, Program(), timeout=10)
            assert outcome.value == 1, outcome
            assert len(cluster.scheduler.state.workers) == 1


@fuzz_settings(scale=0.6)
@given(attacks_=st.lists(attacks(), min_size=1, max_size=4))
def test_scheduler_survives_hostile_peers(attacks_):
    crashes = _Crashes()
    logger = logging.getLogger("trioflow")
    logger.addHandler(crashes)
    try:
        trio.run(_siege, attacks_)
    finally:
        logger.removeHandler(crashes)
    crashed = [r.getMessage() + "\n" + (logging.Formatter().formatException(r.exc_info)
                                         if r.exc_info else "") for r in crashes.records
               if r.exc_info is not None]
    assert not crashed, crashed[0]
