"""Several hosts on one machine: Linux network namespaces joined by a bridge.

The scheduler and two workers each run in their own namespace with their own private
test address (10.250.N.0/24, made here and removed afterwards; nothing outside this
machine is ever addressed). Mid-run, one worker's link is cut: its TCP connection
neither closes nor errors, so only heartbeats can tell. Its tasks must finish on the
other worker within the peer timeout, with every result right.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import trio

pytestmark = pytest.mark.slow

NET = f"10.250.{os.getpid() % 200 + 20}"
TAG = f"tf{os.getpid() % 100000}"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


@pytest.fixture
def hosts():
    """Namespaces {TAG}s (scheduler), {TAG}a, {TAG}b (workers) on a bridge in {TAG}x."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if sh("ip", "netns", "add", f"{TAG}x", check=False).returncode != 0:
        pytest.skip("cannot create network namespaces here (ip netns add failed)")
    names = {"s": 1, "a": 2, "b": 3}
    try:
        sh("ip", "netns", "exec", f"{TAG}x", "ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "netns", "exec", f"{TAG}x", "ip", "link", "set", "br0", "up")
        for n, host in names.items():
            ns = f"{TAG}{n}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", f"{TAG}{n}0", "type", "veth", "peer", "name", f"{TAG}{n}1")
            sh("ip", "link", "set", f"{TAG}{n}0", "netns", ns)
            sh("ip", "link", "set", f"{TAG}{n}1", "netns", f"{TAG}x")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{NET}.{host}/24", "dev", f"{TAG}{n}0")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", f"{TAG}{n}0", "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", f"{TAG}x", "ip", "link", "set", f"{TAG}{n}1", "master", "br0")
            sh("ip", "netns", "exec", f"{TAG}x", "ip", "link", "set", f"{TAG}{n}1", "up")
        yield {n: (f"{TAG}{n}", f"{NET}.{h}") for n, h in names.items()}
    finally:
        for n in [*names, "x"]:
            sh("ip", "netns", "pids", f"{TAG}{n}", check=False)
            for pid in sh("ip", "netns", "pids", f"{TAG}{n}", check=False).stdout.split():
                sh("kill", "-9", pid, check=False)
            sh("ip", "netns", "del", f"{TAG}{n}", check=False)


CLIENT = textwrap.dedent("""
    import subprocess, sys, time, trio, trioflow

    def work(x):
        time.sleep(0.02)  # simulated work, so the cut lands mid-run
        return x * 3

    async def main(address, cut):
        async with trioflow.AsyncClient(address) as client:
            await client.wait_for_workers(2, timeout=30)
            # large values cross hosts over the bulk data path (token-checked TCP):
            big = client.submit(bytes, 300_000, workers=["wa"])
            assert await client.submit(len, big, workers=["wb"]) == 300_000  # worker to worker
            assert len(await big) == 300_000  # this client, straight from wa
            [up] = await client.scatter([bytes(200_000)])
            assert await client.submit(len, up) == 200_000  # uploaded to a worker
            del big, up
            futures = client.map(work, range(200))
            done = 0
            async for _ in trioflow.as_completed(futures):
                done += 1
                if done == 30:
                    subprocess.run(cut, check=True)
                    cut_at = time.monotonic()
            assert await client.gather(futures) == [x * 3 for x in range(200)]
            status = await client.status()
            print("OK", round(time.monotonic() - cut_at, 2), len(status["workers"]), flush=True)

    trio.run(main, sys.argv[1], sys.argv[2:])
""")


async def test_cut_link_tasks_finish_elsewhere(hosts, tmp_path):
    env = {**os.environ, "TRIOFLOW_TOKEN": "multihost-test-token", "PYTHONUNBUFFERED": "1"}
    (ns_s, ip_s), (ns_a, ip_a), (ns_b, ip_b) = hosts["s"], hosts["a"], hosts["b"]
    address = f"ws://{ip_s}:8786"
    procs = []

    def spawn(ns, *argv, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, *argv], env=env, **kw)
        procs.append(p)
        return p

    try:
        sched = spawn(ns_s, "-m", "trioflow.cli", "scheduler", "--host", ip_s, "--port", "8786",
                      "--peer-timeout", "2", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        # it prints its address once it listens
        printed = await trio.to_thread.run_sync(sched.stdout.readline)
        assert printed.decode().strip() == address
        for ns, ip, name in ((ns_a, ip_a, "wa"), (ns_b, ip_b, "wb")):
            spawn(ns, "-m", "trioflow.cli", "worker", address, "--host", ip, "--name", name,
                  "--peer-timeout", "2", "--death-timeout", "30", stderr=subprocess.DEVNULL)
        script = tmp_path / "client.py"
        script.write_text(CLIENT)
        cut = ["ip", "netns", "exec", ns_a, "ip", "link", "set", f"{ns_a}0", "down"]
        client = spawn(ns_s, str(script), address, *cut, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
        out, err = await trio.to_thread.run_sync(lambda: client.communicate(timeout=55))
        assert client.returncode == 0, err[-3000:]
        print(out)  # shown with -s: seconds from the cut to the last result, workers left
        word, after_cut, nworkers = out.split()
        assert word == "OK" and int(nworkers) == 1
        # detected by heartbeats within the 2 s peer timeout, then re-run on wb
        assert float(after_cut) < 15, out
    finally:
        for p in procs:
            p.kill()
            p.wait()
