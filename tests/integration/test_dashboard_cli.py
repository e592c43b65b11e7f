"""The dashboard of a ``trioflow-scheduler`` process, and ``trioflow status --watch``."""

from __future__ import annotations

import os
import subprocess

import pytest
import trio

import trioflow

from .clihelpers import PY, cli_scheduler, start_worker, stop
from .dashboard_helpers import get
from .tasks import inc

pytestmark = pytest.mark.slow


async def test_the_scheduler_process_serves_its_dashboard_and_status_watches():
    async with cli_scheduler() as (address, _):
        worker = await start_worker(address, "--name", "w-cli")
        try:
            async with trioflow.AsyncClient(address) as client:
                await client.wait_for_workers(1, timeout=30)
                kept = client.map(inc, range(10))
                await client.gather(kept)
                link = client.dashboard_link
                assert link.startswith("http://127.0.0.1:") and link.endswith("/")
                snap = (await get(link + "api/snapshot")).json()
                assert [w["name"] for w in snap["workers"]] == ["w-cli"]
                assert snap["runs_total"] == 10
                out = await trio.run_process(
                    [PY, "-m", "trioflow.cli", "status", address, "--watch", "--count", "2",
                     "--interval", "0.05"], capture_stdout=True)
                text = out.stdout.decode()
                assert text.count("w-cli") == 2 and text.count(f"dashboard: {link}") == 2
        finally:
            await stop(worker)


async def test_an_exposed_dashboard_needs_the_token():
    env = {**os.environ, "TRIOFLOW_TOKEN": "cli-t0ken"}
    async with cli_scheduler("--host", "0.0.0.0", "--dashboard-address", "0.0.0.0:0",
                             env=env) as (address, _):
        async with trioflow.AsyncClient(address, token="cli-t0ken") as client:
            link = client.dashboard_link
        port = link.split(":")[2].split("/")[0]
        base = f"http://127.0.0.1:{port}"
        assert link.endswith("/?token=cli-t0ken")
        answer = await get(base + "/api/snapshot")
        assert answer.status == 401 and b"workers" not in answer.body
        assert (await get(base + "/metrics", Authorization="Bearer cli-t0ken")).status == 200


@pytest.mark.parametrize(("args", "code", "says"), [
    (["--dashboard-address", "0.0.0.0:0"], 3, "refusing to serve the dashboard"),
    (["--dashboard-address", "nonsense"], 2, "HOST:PORT"),
])
async def test_dashboard_address_checks(args, code, says):
    env = {k: v for k, v in os.environ.items() if k != "TRIOFLOW_TOKEN"}
    out = await trio.run_process([PY, "-m", "trioflow.cli", "scheduler", "--port", "0", *args],
                                 capture_stderr=True, check=False, env=env,
                                 stdout=subprocess.DEVNULL)
    assert out.returncode == code
    assert says in out.stderr.decode()


async def test_a_taken_dashboard_address_is_a_clear_failure():
    # (a taken *default* address, 8787, falls back to a free port instead: not tested
    # here, as that port may be anyone's on this machine)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    held = listeners[0].socket.getsockname()[1]
    try:
        out = await trio.run_process(
            [PY, "-m", "trioflow.cli", "scheduler", "--port", "0", "--dashboard-address",
             f"127.0.0.1:{held}"], capture_stderr=True, stdout=subprocess.DEVNULL, check=False)
    finally:
        for listener in listeners:
            await listener.aclose()
    assert out.returncode == 1
    assert f"cannot serve the dashboard on 127.0.0.1:{held}" in out.stderr.decode()
