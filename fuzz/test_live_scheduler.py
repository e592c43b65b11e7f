"""A live scheduler under fire: garbage and arbitrary well-formed messages over a real
WebSocket, and raw connections that die at any handshake step, send oversized or slow
unauthenticated frames, or flood the port. Each connection must be answered or closed,
the server must never crash (nor log a crashed handler), and a normal client must be
served afterwards."""

from __future__ import annotations

import logging

import attrs
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, open_websocket_url

import trioflow
from trioflow import config
from trioflow import protocol as p
from trioflow.net import scheduler_server
from trioflow.testing import Program
from trioflow.testing.hostile import (
    UPGRADE_REQUEST,
    flood,
    hello_frame,
    logged_errors,
    reset,
    run_steps,
)
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


async def _attack(address: str, attack: Attack) -> None:
    try:
        async with open_websocket_url(address) as ws:
            if attack.hello is not None:
                await ws.send_message(p.encode_frame([p.Hello(
                    attack.hello, "fuzz", list(p.SUPPORTED_VERSIONS), "", 2, "ws://127.0.0.1:9")]))
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
    with logged_errors() as records:  # handlers that raised: the server logs and goes on
        trio.run(_siege, attacks_)
    crashed = [r.getMessage() + "\n" + (logging.Formatter().formatException(r.exc_info)
                                         if r.exc_info else "") for r in records
               if r.exc_info is not None]
    assert not crashed, crashed[0]


#: the handshake, step by step; a raw attack runs a prefix of it, then one extra step
HANDSHAKE = ("request", "read_upgrade", "hello")
EXTRAS = ("partial_request", "partial_frame", "garbage", "oversized_frame", "slow_frame",
          "worker_hello")


@attrs.frozen
class RawAttack:
    """One raw connection: the first ``depth`` handshake steps, extra steps, an ending;
    or, with ``flood`` > 0, that many connections that never send a request."""

    depth: int
    extras: tuple[str, ...]
    end: str
    flood: int = 0


def raw_attacks() -> st.SearchStrategy[RawAttack]:
    one = st.builds(RawAttack, st.integers(0, len(HANDSHAKE)),
                    st.lists(st.sampled_from(EXTRAS), max_size=2).map(tuple),
                    st.sampled_from(["reset", "close", "wait"]))
    floods = st.builds(RawAttack, st.just(0), st.just(()), st.sampled_from(["reset", "close"]),
                       st.integers(1, 60))
    return one | floods


async def _raw_siege(attacks_: list[RawAttack]) -> None:
    with trio.fail_after(DEADLINE):
        async with trioflow.open_local_cluster(1, 1, processes=False) as cluster:
            port = int(cluster.address.rsplit(":", 1)[1])
            for attack in attacks_:
                if attack.flood:
                    await flood(port, attack.flood, end=attack.end)
                    continue
                steps, end = _shape([*HANDSHAKE[:attack.depth], *attack.extras], attack.end)
                with trio.fail_after(5):  # "wait" ends when the server gives up on us
                    outcome = await run_steps(port, steps, end, slow_delay=0.002)
                assert outcome["sent_oversized"] < 64 * 1024 * 1024, outcome
            async with trioflow.AsyncClient(cluster.address) as client:
                outcome = await run_program(client, Program(), timeout=10)
            assert outcome.value == 1, outcome


def _shape(steps: list[str], end: str) -> tuple[list[str], str]:
    """After a Hello the peer is authenticated: 64 MB is a legal frame then (the limit is
    512 MiB; it would only cost time), and the server keeps the connection (nothing to
    wait for). So oversized frames become garbage there, and "wait" becomes "close"."""
    out: list[str] = []
    for step in steps:
        authenticated = any(s in ("hello", "worker_hello") for s in out)
        out.append("garbage" if step == "oversized_frame" and authenticated else step)
    if end == "wait" and any(s in ("hello", "worker_hello") for s in out):
        end = "close"
    return out, end


@fuzz_settings(scale=0.15)
@given(attacks_=st.lists(raw_attacks(), min_size=1, max_size=4))
def test_scheduler_survives_connections_dying_anywhere(attacks_):
    # short handshake limits, so that attacks ending in "wait" end soon
    saved = (scheduler_server.HANDSHAKE_TIMEOUT, scheduler_server.UPGRADE_TIMEOUT)
    scheduler_server.HANDSHAKE_TIMEOUT = scheduler_server.UPGRADE_TIMEOUT = 0.3
    try:
        with logged_errors() as crashes:
            trio.run(_raw_siege, attacks_)
    finally:
        scheduler_server.HANDSHAKE_TIMEOUT, scheduler_server.UPGRADE_TIMEOUT = saved
    assert not crashes, [r.getMessage() for r in crashes]


#: a WebSocket frame header field by field: any flags and opcode, masked or not, any
#: announced length encoding (the payload sent may be shorter than announced)
@attrs.frozen
class RawFrame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    length_form: int  # 0: 7-bit, 1: 16-bit, 2: 64-bit
    payload: bytes

    def encode(self) -> bytes:
        n = len(self.payload)
        first = (0x80 if self.fin else 0) | (self.rsv << 4) | self.opcode
        bit = 0x80 if self.masked else 0
        if self.length_form == 0 and n < 126:
            head = bytes([first, bit | n])
        elif self.length_form <= 1 and n < 65536:
            head = bytes([first, bit | 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([first, bit | 127]) + n.to_bytes(8, "big")
        return head + (b"\0\0\0\0" if self.masked else b"") + self.payload


def raw_frames() -> st.SearchStrategy[bytes]:
    payloads = st.binary(max_size=140) | frames().filter(lambda f: isinstance(f, bytes))
    frame = st.builds(RawFrame, st.booleans(), st.integers(0, 7), st.integers(0, 15),
                      st.booleans(), st.integers(0, 2), payloads)
    return frame.map(RawFrame.encode) | st.binary(max_size=30)


async def _frame_attack(port: int, hello: bool, sent: list[bytes], end: str) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(UPGRADE_REQUEST + (hello_frame() if hello else b""))
        for data in sent:
            await stream.send_all(data)
        if end == "wait":  # until the server closes (it must, or answer and wait)
            with trio.move_on_after(0.5):
                while await stream.receive_some(65536):
                    pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        if end == "reset":
            reset(stream)
        else:
            await trio.aclose_forcefully(stream)


async def _frame_siege(attacks_: list[tuple[bool, list[bytes], str]]) -> None:
    with trio.fail_after(DEADLINE):
        async with trioflow.open_local_cluster(1, 1, processes=False) as cluster:
            port = int(cluster.address.rsplit(":", 1)[1])
            for hello, sent, end in attacks_:
                with trio.fail_after(5):
                    await _frame_attack(port, hello, sent, end)
            async with trioflow.AsyncClient(cluster.address) as client:
                outcome = await run_program(client, Program(), timeout=10)
            assert outcome.value == 1, outcome


@fuzz_settings(scale=0.3)
@given(attacks_=st.lists(st.tuples(st.booleans(), st.lists(raw_frames(), max_size=5),
                                   st.sampled_from(["reset", "close", "wait"])),
                         min_size=1, max_size=4))
def test_scheduler_survives_malformed_websocket_frames(attacks_):
    """The frame layer itself (``protocol/wsframe.py``) under fire, before and after a
    Hello: bad flags, opcodes, masking, lengths, fragments and control frames must close
    that one connection (or be served), never crash a handler or the server."""
    with logged_errors() as crashes:
        trio.run(_frame_siege, attacks_)
    assert not crashes, [r.getMessage() for r in crashes]


def test_handshake_limits_are_small():
    # what the fuzzer's oversized frames are checked against
    assert config.MAX_HELLO_SIZE <= 64 * 1024
    assert config.UPGRADE_TIMEOUT <= 10 and config.HELLO_TIMEOUT <= 10
