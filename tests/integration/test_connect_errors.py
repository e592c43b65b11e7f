"""Each way of failing to reach a scheduler has its own message; address mistakes on
the command line are one-line usage errors."""

from __future__ import annotations

import socket
from functools import partial

import pytest
import trio

import trioflow
from trioflow import protocol as p
from trioflow.net import handshake
from trioflow.net.addresses import scheduler_address
from trioflow.net.connection import open_connection

from .clihelpers import PY, cli_scheduler, start_worker, stop


async def test_address_forms():
    assert scheduler_address("127.0.0.1:8786") == "ws://127.0.0.1:8786"
    assert scheduler_address("tcp://host:1") == "ws://host:1"
    assert scheduler_address("tls://host:1") == "wss://host:1"
    assert scheduler_address("wss://host:1/x") == "wss://host:1/x"
    assert scheduler_address("[::1]:9") == "ws://[::1]:9"
    for bad, says in [("127.0.0.1", "not a scheduler address"), ("", "empty"),
                      ("http://h:1", "use ws://"), ("ws://h:port", "no valid port"),
                      ("tcp://h", "no port"), ("udp://h:1", "does not speak udp")]:
        with pytest.raises(trioflow.AddressError, match=says):
            scheduler_address(bad)


async def expect_refusal(address, match, kind=trioflow.ClientClosedError):
    with pytest.raises(kind, match=match):
        async with trioflow.AsyncClient(address):
            pass


async def test_nothing_listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = s.getsockname()[1]
        await expect_refusal(f"ws://127.0.0.1:{port}",
                             "nothing is listening at ws://127.0.0.1:.*trioflow-scheduler running")


async def test_name_that_does_not_resolve():
    await expect_refusal("ws://no-such-host.invalid:8786", "cannot resolve the host")


async def test_tls_to_a_plain_scheduler_and_plain_http():
    async with trioflow.open_local_cluster(1, 1, processes=False) as cluster:
        await expect_refusal(cluster.address.replace("ws://", "wss://"),
                             "TLS handshake with wss://.* failed")
        # a worker's data port is not a WebSocket server
        data = cluster.workers[0].data_address.replace("tcp://", "ws://")
        await expect_refusal(data, "without answering the WebSocket upgrade")


async def test_http_server_that_is_not_trioflow():
    async def answer(stream):
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, answer, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        await expect_refusal(f"ws://127.0.0.1:{port}", "answered HTTP 404")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("hello, kind, says", [
    (p.Hello("client", "old", [999]), trioflow.errors.ProtocolVersionError,
     "same trioflow version"),
    (p.Hello("client", "v2", [2]), trioflow.errors.ProtocolVersionError,
     r"speaks protocol versions \[2\], this scheduler speaks \[3\]"),
    (p.Hello("dashboard", "who", list(p.SUPPORTED_VERSIONS)), trioflow.ClientClosedError, "unknown role 'dashboard'"),
])
async def test_wrong_protocol_version_and_wrong_role(hello, kind, says):
    async with trioflow.open_local_cluster(1, 1, processes=False) as cluster:
        async with open_connection(cluster.address, name="scheduler") as conn:
            conn.send(hello)
            await conn.flush()
            with pytest.raises(kind, match=says):
                await handshake.expect_welcome(conn)


async def test_cli_address_mistakes_are_one_line_usage_errors():
    for args in (["worker", "127.0.0.1"], ["status", "http://127.0.0.1:8786"],
                 ["worker", "ws://127.0.0.1:notaport"]):
        result = await trio.run_process([PY, "-m", "trioflow.cli", *args], check=False,
                                        capture_stderr=True)
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, lines
        assert "ws://HOST:PORT" in lines[0] or "use ws://" in lines[0]


async def test_cli_worker_accepts_dask_style_address():
    async with cli_scheduler() as (address, _):
        worker = await start_worker(address.replace("ws://", "tcp://"), "--name", "dasky")
        try:
            async with trioflow.AsyncClient(address.removeprefix("ws://")) as client:
                await client.wait_for_workers(1, timeout=30)
                assert (await client.status())["workers"][0]["name"] == "dasky"
        finally:
            await stop(worker)


async def test_cli_worker_reports_why_it_could_not_connect():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        result = await trio.run_process(
            [PY, "-m", "trioflow.cli", "worker", f"127.0.0.1:{port}", "--death-timeout", "0.5"],
            check=False, capture_stderr=True)
    text = result.stderr.decode().strip()
    assert result.returncode == 1 and len(text.splitlines()) == 1
    assert "nothing is listening" in text
