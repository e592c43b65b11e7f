"""Real processes: the CLIs, kill -9, KilledWorker, tokens, TLS, refusing to expose."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time

import pytest
import trio

import trioflow

from .clihelpers import PY, cli_scheduler, start_worker, stop

pytestmark = pytest.mark.slow


def slow_square(x):
    time.sleep(0.005)  # simulated work, so a kill lands mid-run
    return x * x


def where_am_i():
    return os.getpid()


def big_result():
    # larger than the inline limit: it lives on its worker only
    return os.getpid(), b"x" * 200_000


def kill_my_worker():
    os.kill(os.getpid(), signal.SIGKILL)


async def wait_workers(client, n):
    await client.wait_for_workers(n, timeout=30)


async def test_kill_minus_9_mid_run_loses_nothing():
    async with cli_scheduler() as (address, _):
        workers = [await start_worker(address, "--name", f"w{i}") for i in range(2)]
        try:
            async with trioflow.AsyncClient(address) as client:
                await wait_workers(client, 2)
                big = client.submit(big_result)
                holder, _ = await big
                futures = client.map(slow_square, range(300))
                done = 0
                async for _ in trioflow.as_completed(futures):
                    done += 1
                    if done == 40:
                        for w in workers:
                            if w.pid == holder:
                                w.kill()  # SIGKILL, mid-run
                assert await client.gather(futures) == [x * x for x in range(300)]
                # the only copy of `big` was on the killed worker: it is recomputed
                assert await client.submit(lambda b: len(b[1]), big) == 200_000
                status = await client.status()
                assert len(status["workers"]) == 1
        finally:
            for w in workers:
                await stop(w)


async def test_tasks_that_kill_their_worker_end_in_killed_worker():
    async with cli_scheduler() as (address, _):
        workers = [await start_worker(address, "--name", f"w{i}") for i in range(4)]
        try:
            async with trioflow.AsyncClient(address) as client:
                await wait_workers(client, 4)
                with pytest.raises(trioflow.KilledWorker) as info:
                    await client.submit(kill_my_worker)
                assert len(info.value.workers) == 3 and "w" in str(info.value)
                # one worker is left and the cluster still works
                assert await client.submit(slow_square, 3) == 9
        finally:
            for w in workers:
                await stop(w)


async def test_token_is_required_and_checked():
    env = {"TRIOFLOW_TOKEN": "s3cret-token"}
    async with cli_scheduler(env=env) as (address, _):
        worker = await start_worker(address, env=env)
        try:
            for bad in (None, "wrong"):
                client = trioflow.AsyncClient(address, token=bad or "")
                with pytest.raises(trioflow.AuthenticationError, match="token"):
                    async with client:
                        pass
            bad_worker = await trio.run_process(
                [PY, "-m", "trioflow.cli", "worker", address], check=False,
                env={**os.environ, "TRIOFLOW_TOKEN": "nope"}, capture_stderr=True)
            assert bad_worker.returncode == 1
            assert bad_worker.stderr.decode().strip().startswith("error: the scheduler refused us")
            async with trioflow.AsyncClient(address, token="s3cret-token") as client:
                await wait_workers(client, 1)
                assert await client.submit(slow_square, 4) == 16
        finally:
            await stop(worker)


async def test_refuses_to_listen_publicly_without_token():
    result = await trio.run_process(
        [PY, "-m", "trioflow.cli", "scheduler", "--host", "0.0.0.0", "--port", "0"],
        check=False, capture_stderr=True, env={k: v for k, v in os.environ.items()
                                              if k != "TRIOFLOW_TOKEN"})
    assert result.returncode == 3 and b"without a token" in result.stderr


async def test_tls_round_trip(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    async with cli_scheduler("--tls-cert", str(cert), "--tls-key", str(key)) as (address, _):
        assert address.startswith("wss://")
        tls = ("--tls-ca", str(cert), "--tls-cert", str(cert), "--tls-key", str(key))
        workers = [await start_worker(address, "--name", name, *tls) for name in ("a", "b")]
        try:
            ctx = ssl.create_default_context(cafile=str(cert))
            async with trioflow.AsyncClient(address, ssl_context=ctx) as client:
                await wait_workers(client, 2)
                assert await client.submit(slow_square, 5) == 25
                # worker to worker over wss:// too (the result is too big to go inline)
                big = client.submit(bytes, 200_000, workers=["a"])
                assert await client.submit(len, big, workers=["b"]) == 200_000
            # without trusting the certificate, the connection is refused
            with pytest.raises(trioflow.AuthenticationError, match="not trusted"):
                async with trioflow.AsyncClient(address, ssl_context=ssl.create_default_context()):
                    pass
        finally:
            for worker in workers:
                await stop(worker)


async def test_status_command_and_sigterm_drain():
    async with cli_scheduler() as (address, _):
        worker = await start_worker(address, "--name", "solo", "--nthreads", "2")
        try:
            async with trioflow.AsyncClient(address) as client:
                await wait_workers(client, 1)
                out = await trio.run_process([PY, "-m", "trioflow.cli", "status", address],
                                             capture_stdout=True)
                text = out.stdout.decode()
                assert "solo" in text and "slots" in text
                running = client.submit(slow_square, 7)
                await trioflow.wait_async([running])
                worker.send_signal(signal.SIGTERM)
                with trio.fail_after(15):
                    await worker.wait()
                assert worker.returncode == 0
                assert await running == 49
        finally:
            await stop(worker)


async def test_run_leaves_no_process_behind(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(
        "import os, sys, trioflow\n"
        "def main():\n"
        "    c = trioflow.get_client()\n"
        "    pids = c.gather(c.map(lambda i: os.getpid(), range(20)))\n"
        "    print(' '.join(map(str, sorted(set(pids)))), flush=True)\n"
        "    if sys.argv[1] == 'raise':\n"
        "        raise SystemExit(7)\n"
        "if __name__ == '__main__':\n"
        "    trioflow.run(main, workers=2, threads_per_worker=1)\n")
    for mode, code in (("ok", 0), ("raise", 7)):
        result = subprocess.run([sys.executable, str(script), mode], capture_output=True,
                                timeout=60, text=True)
        assert result.returncode == code, result.stderr
        pids = [int(x) for x in result.stdout.split()]
        assert len(pids) == 2
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


async def test_ctrl_c_tears_everything_down(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(
        "import os, signal, threading, trioflow\n"
        # a program run from a terminal starts with Python's own SIGINT handler; this
        # test may have inherited an ignored SIGINT (a shell's background job does), so
        # the program sets the handler it would have had, instead of inheriting ours
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "def main():\n"
        "    c = trioflow.get_client()\n"
        "    pids = c.gather(c.map(lambda i: os.getpid(), range(20)))\n"
        "    print(' '.join(map(str, sorted(set(pids)))), flush=True)\n"
        "    threading.Event().wait()  # runs until interrupted\n"
        "if __name__ == '__main__':\n"
        "    trioflow.run(main, workers=2, threads_per_worker=1)\n")
    proc = await trio.lowlevel.open_process([sys.executable, str(script)],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    from .clihelpers import read_line

    pids = [int(x) for x in (await read_line(proc)).split()]
    assert len(pids) == 2
    proc.send_signal(signal.SIGINT)
    with trio.fail_after(20):
        await proc.wait()
    assert proc.returncode != 0  # KeyboardInterrupt
    err = b""
    while chunk := await proc.stderr.receive_some(1 << 16):
        err += chunk
    err = err.decode()
    # a plain KeyboardInterrupt, not an exception group; the workers left quietly
    assert err.strip().endswith("KeyboardInterrupt") and "ExceptionGroup" not in err, err
    assert "lost the scheduler" not in err, err
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
