"""``python -m benchmarks.wire [--round-trips 3000] [--repeats 3]``: the WebSocket layer's
CPU per message, against trio-websocket and a raw Trio stream.

One process, loopback TCP, one Trio loop: a client sends a small binary message (the
size of a one-message control frame, 44 bytes) and the server sends it back, N times.
Three stacks carry the same bytes:

* ``trioflow``: ``net/ws_upgrade.py`` (wsproto's upgrade), then ``net/websocket.py``
  (``protocol/wsframe.py`` read in the receiving task), the server started by
  ``serve_guarded_websocket`` as the scheduler does;
* ``trio-websocket``: ``serve_websocket`` and ``open_websocket_url``, as trioflow used
  before (a reader task and a memory channel per connection, wsproto's frame parser);
* ``raw``: the bytes on a plain ``trio.SocketStream`` (no framing at all: the floor).

Reports ``time.process_time`` per round trip (two messages, each sent and received,
both ends in this process) as the median of ``--repeats`` runs; CPU time is steadier
than wall time on a shared machine. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio_websocket

from trioflow.net import ws_upgrade
from trioflow.net.handshake_limits import open_limits, serve_guarded_websocket

#: a one-message frame, about what a TaskFinished with a small inline result encodes to
MESSAGE = b"\x92\x01\x91\x94\xadtask-finished\xa5key-1\x01\xc4\x10" + b"x" * 16
WARMUP = 100


async def _client_loop(send: Callable[[bytes], Awaitable[None]],
                       get: Callable[[], Awaitable[Any]], n: int) -> float:
    for _ in range(WARMUP):
        await send(MESSAGE)
        await get()
    start = time.process_time()
    for _ in range(n):
        await send(MESSAGE)
        await get()
    return (time.process_time() - start) / n * 1e6


async def _echo(get: Callable[[], Awaitable[Any]],
                send: Callable[[Any], Awaitable[None]], n: int) -> None:
    for _ in range(WARMUP + n):
        await send(await get())


async def run_trioflow(n: int) -> float:
    async def handler(request: ws_upgrade.UpgradeRequest) -> None:
        ws = await request.accept()
        open_limits(ws, 1 << 20, 1 << 18)
        await _echo(ws.get_message, ws.send_message, n)
        try:
            await ws.get_message()  # the client's close
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        async def start(task_status: trio.TaskStatus[Any]) -> None:
            await serve_guarded_websocket(handler, "127.0.0.1", 0, None,
                                          handler_nursery=nursery,
                                          max_message_size=1 << 20, task_status=task_status)
        server = await nursery.start(start)
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        ws = await ws_upgrade.client_upgrade(stream, host=f"127.0.0.1:{server.port}",
                                            target="/", max_message_size=1 << 20,
                                            receive_buffer_size=1 << 18)
        us = await _client_loop(ws.send_message, ws.get_message, n)
        await ws.aclose()
        nursery.cancel_scope.cancel()
    return us


async def run_trio_websocket(n: int) -> float:
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await _echo(ws.get_message, ws.send_message, n)
            await ws.get_message()
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0,
                                     None)
        url = f"ws://127.0.0.1:{server.port}/"
        async with trio_websocket.open_websocket_url(url) as ws:
            us = await _client_loop(ws.send_message, ws.get_message, n)
        nursery.cancel_scope.cancel()
    return us


async def run_raw(n: int) -> float:
    async def handler(stream: trio.SocketStream) -> None:
        await _echo(lambda: stream.receive_some(65536), stream.send_all, n)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, handler, 0)
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        us = await _client_loop(stream.send_all, lambda: stream.receive_some(65536), n)
        nursery.cancel_scope.cancel()
    return us


STACKS = {"trioflow": run_trioflow, "trio-websocket": run_trio_websocket, "raw": run_raw}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wire",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in STACKS}
    for _ in range(args.repeats):  # interleaved, so drift hits every stack alike
        for name, fn in STACKS.items():
            results[name].append(trio.run(fn, args.round_trips))
    print("| stack | CPU us per round trip (median) | per message | runs |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        med = statistics.median(runs)
        shown = ", ".join(f"{r:.0f}" for r in runs)
        print(f"| {name} | {med:.0f} | {med / 2:.0f} | {shown} |")


if __name__ == "__main__":
    main()
