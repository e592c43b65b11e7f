"""LocalConnection: the in-process link between a local cluster and its own client."""

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from trioflow import protocol as p
from trioflow.net.local_link import local_pair


async def test_messages_arrive_in_order_as_one_batch():
    a, b = local_pair("a", "b")
    a.send(p.ReleaseKeys(["x"]))
    a.send(p.Heartbeat())
    assert await b.receive() == [p.ReleaseKeys(["x"]), p.Heartbeat()]
    b.send(p.Heartbeat())
    assert await a.receive() == [p.Heartbeat()]


async def test_free_form_messages_go_through_the_codec():
    a, b = local_pair("a", "b")
    a.send(p.StatusReply(1, [{"name": ("w", 1)}], {"counts": (1, 2)}))
    (msg,) = await b.receive()
    assert msg == p.StatusReply(1, [{"name": ["w", 1]}], {"counts": [1, 2]})


async def test_close_delivers_what_was_sent_then_the_code():
    a, b = local_pair("a", "b")
    a.send(p.Heartbeat())
    await a.aclose(4000, "bad frame")
    a.send(p.Heartbeat())  # dropped: closed
    assert await b.receive() == [p.Heartbeat()]
    with pytest.raises(ConnectionClosed) as info:
        await b.receive()
    assert info.value.reason.code == 4000
    with pytest.raises(ConnectionClosed):
        await a.receive()


async def test_a_waiting_receiver_wakes_on_send_and_on_close():
    a, b = local_pair("a", "b")
    got = []

    async def read():
        try:
            while True:
                got.extend(await b.receive())
        except ConnectionClosed as exc:
            got.append(exc.reason.code)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        a.send(p.Heartbeat())
        await trio.testing.wait_all_tasks_blocked()
        a.close(1000)
    assert got == [p.Heartbeat(), 1000]
