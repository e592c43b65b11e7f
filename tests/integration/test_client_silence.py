"""The client gives up on a scheduler silent for ``PEER_TIMEOUT``, measured from the
last frame, and never on one that keeps talking: the read loop renews one deadline per
``PEER_TIMEOUT`` instead of opening a cancel scope per frame (issue 12), and this is
what must not change. A fake scheduler over a real WebSocket welcomes the client, then
talks or falls silent on command."""

from __future__ import annotations

import pytest
import trio

import trioflow
import trioflow.client_link
from trioflow import protocol as p

from .fake_scheduler import FakeScheduler

#: the client's silence limit in these tests (monkeypatched): far above the fake's
#: 20 ms between frames, so a loaded machine cannot make a talking scheduler look silent
TIMEOUT = 1.0


class TalkingScheduler(FakeScheduler):
    """Welcomes one client; sends a Heartbeat every 20 ms until ``hush()``."""

    def __init__(self) -> None:
        super().__init__()
        self._hush = trio.Event()

    async def talk(self, ws) -> None:
        async with trio.open_nursery() as nursery:
            async def swallow() -> None:
                while True:
                    await ws.get_message()
            nursery.start_soon(swallow)
            while not self._hush.is_set():
                await ws.send_message(p.encode_frame([p.Heartbeat()], p.PROTOCOL_VERSION))
                with trio.move_on_after(0.02):
                    await self._hush.wait()
            await trio.sleep_forever()  # silent, the connection open

    def hush(self) -> None:
        self._hush.set()


@pytest.fixture
def short_timeout(monkeypatch):
    monkeypatch.setattr(trioflow.client_link, "PEER_TIMEOUT", TIMEOUT)


async def test_a_talking_scheduler_is_kept_past_several_deadlines_then_a_silent_one_dropped(
        short_timeout):
    fake = TalkingScheduler()
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        with trio.fail_after(30):
            async with trioflow.AsyncClient(fake.address) as client:
                future = client.submit(abs, -1)  # never answered
                # (a wait, not a sleep to wait for something: the scheduler must be kept
                # across 2.5 deadlines of the silence limit while it talks)
                await trio.sleep(2.5 * TIMEOUT)
                assert client._session.closed is None
                fake.hush()
                hushed = trio.current_time()
                with pytest.raises(trioflow.ClientClosedError, match="silent"):
                    await future
                # dropped about TIMEOUT after the last frame, not at a stale deadline
                assert trio.current_time() - hushed >= TIMEOUT - 0.1
        nursery.cancel_scope.cancel()
