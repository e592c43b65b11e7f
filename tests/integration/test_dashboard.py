"""The dashboard over real HTTP on a real local cluster: snapshot, events, metrics, auth."""

from __future__ import annotations

import logging
import threading

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import trioflow
from trioflow.client import open_client
from trioflow.dashboard.server import Dashboard

from .conftest import cluster_client, quiesce
from .dashboard_helpers import events, get
from .tasks import fib_no_secede, inc


def spawner(n):
    client = trioflow.get_client()
    futures = [client.submit(inc, i) for i in range(n)]
    trioflow.secede()
    total = sum(client.gather(futures))
    trioflow.rejoin()
    return total


RELEASE = threading.Event()


def held():
    RELEASE.wait(30)
    return 1


def waits_on_held(key):
    client = trioflow.get_client()
    # no secede: this run blocks its slot, which the wait-for graph shows
    return client.submit(held, key=key).result() + 1


async def test_snapshot_shows_workers_progress_tree_and_stream():
    async with cluster_client(2, 2) as (cluster, client):
        kept = client.map(inc, range(20))  # held: their results count as memory
        assert await client.gather(kept) == list(range(1, 21))
        assert await client.submit(spawner, 5) == 15
        snap = (await get(cluster.dashboard.address + "/api/snapshot")).json()
        assert sorted(w["name"] for w in snap["workers"]) == ["worker-0", "worker-1"]
        assert all(w["slots"] == 2 for w in snap["workers"])
        progress = {p["fn"]: p for p in snap["progress"]}
        assert progress["inc"]["done"] == 25 and progress["spawner"]["done"] == 1
        tree = {(e["depth"], e["parent"], e["fn"]): e["done"] for e in snap["tree"]}
        assert tree == {(0, "", "inc"): 20, (0, "", "spawner"): 1, (1, "spawner", "inc"): 5}
        assert snap["runs_total"] == 26
        # the stream: every finished run, with its worker, thread and timing
        assert len(snap["stream"]) == 26
        for _seq, worker, thread, fn, key, start, duration, returned in snap["stream"]:
            assert returned and worker in ("worker-0", "worker-1")
            assert thread and key.startswith(fn)
            assert start > 1e9 and duration >= 0
        assert sum(w["memory"] for w in snap["workers"]) > 0


async def test_workers_report_their_threads_and_memory():
    async with cluster_client(2, 1) as (cluster, client):
        await client.gather(client.map(inc, range(4)))
        state = cluster.scheduler.state
        # each worker reports when its counts change (checked once a second)
        await cluster.scheduler.wait_for(lambda: len(state.worker_threads) == 2 and all(
            r.threads >= 1 for r in state.worker_threads.values()))
        snap = (await get(cluster.dashboard.address + "/api/snapshot")).json()
        for w in snap["workers"]:
            assert w["threads"] >= 1 and w["overflow"] == 0 and w["rss"] > 1 << 20
            assert 0 <= w["idle_threads"] <= w["threads"]
        text = (await get(cluster.dashboard.address + "/metrics")).body.decode()
        assert 'trioflow_worker_threads{worker="worker-0"}' in text
        assert 'trioflow_worker_rss_bytes{worker="worker-1"}' in text


async def test_waits_seceded_and_blocked_slots_are_live():
    RELEASE.clear()
    async with cluster_client(1, 2) as (cluster, client):
        fut = client.submit(waits_on_held, "the-held-one", key="the-waiter")
        state = cluster.scheduler.state
        await cluster.scheduler.wait_for(
            lambda: any(w.blocked for w in state.workers.values())
            and "the-held-one" in state.tasks)
        snap = (await get(cluster.dashboard.address + "/api/snapshot")).json()
        assert snap["waits"] == [["the-waiter", "the-held-one"]]
        (worker,) = snap["workers"]
        assert worker["blocked"] == 1 and worker["busy"] == 1
        # why, from the scheduler's own explanation
        why = (await get(cluster.dashboard.address + "/api/why?key=the-waiter")).json()
        assert why["key"] == "the-waiter" and "the-held-one" in why["why"]
        assert (await get(cluster.dashboard.address + "/api/why")).status == 400
        RELEASE.set()
        assert await fut == 2


async def test_the_latest_deadlock_report_is_shown():
    async with cluster_client(1, 1) as (cluster, client):
        with pytest.raises(trioflow.DeadlockError) as info:
            await client.submit(fib_no_secede, 3)
        await quiesce(cluster)  # no run left: no later report can come
        snap = (await get(cluster.dashboard.address + "/api/snapshot")).json()
        reports = cluster.scheduler.state.deadlocks
        # (the children, still wanted, may deadlock a second time once the parent's
        # wait has failed and its slot is free: that is a real deadlock too)
        assert snap["deadlocks"] == len(reports) >= 1 and snap["deadlock"] == reports[-1]
        assert "holds a slot on worker" in snap["deadlock"] and reports[0] in str(info.value)


async def test_events_push_updates_while_work_runs():
    async with cluster_client(1, 1) as (cluster, client):
        first = client.map(inc, range(10))
        await client.gather(first)

        async def more_work():
            for i in range(10):
                await client.gather(client.map(inc, range(100 + 10 * i, 110 + 10 * i)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(more_work)
            snaps = await events(cluster.dashboard.address + "/events", 3)
        assert snaps[0]["runs_total"] >= 10
        assert [s["time"] for s in snaps] == sorted(s["time"] for s in snaps)
        assert snaps[-1]["time"] > snaps[0]["time"]


async def test_metrics_are_prometheus_text():
    async with cluster_client(2, 1) as (cluster, client):
        kept = client.map(inc, range(7))
        await client.gather(kept)
        answer = await get(cluster.dashboard.address + "/metrics")
        assert answer.status == 200 and answer.headers["content-type"].startswith("text/plain")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(answer.body.decode())
                   for s in family.samples}
        assert samples[("trioflow_runs_finished_total", ())] == 7
        assert samples[("trioflow_workers", ())] == 2
        assert samples[("trioflow_tasks", (("state", "memory"),))] == 7
        assert samples[("trioflow_deadlocks_total", ())] == 0
        assert samples[("trioflow_worker_slots", (("worker", "worker-0"),))] == 1
        assert ("trioflow_worker_memory_bytes", (("worker", "worker-1"),)) in samples
        assert samples[("trioflow_runs_unseen_total", ())] == 0
        assert samples[("trioflow_dashboard_cpu_seconds_total", ())] > 0


async def test_a_token_guards_everything():
    async with trioflow.open_local_cluster(1, 1, token="s3cret") as cluster:
        base = cluster.dashboard.address
        for path in ("/", "/events", "/api/snapshot", "/metrics", "/static/dashboard.js"):
            answer = await get(base + path)
            assert answer.status == 401, path
            assert b"trioflow_" not in answer.body and b"<" not in answer.body
            assert (await get(base + path + "?token=wrong")).status == 401
        assert (await get(base + "/metrics", Authorization="Bearer s3cret")).status == 200
        assert (await get(base + "/metrics", Authorization="Bearer nope")).status == 401
        # the token in the link becomes an HttpOnly cookie and leaves the address bar
        answer = await get(base + "/?token=s3cret")
        assert answer.status == 303 and answer.headers["location"] == "/"
        cookie = answer.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        page = await get(base + "/", Cookie=cookie.split(";")[0])
        assert page.status == 200 and b"trioflow dashboard" in page.body
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert cluster.dashboard_link == base + "/?token=s3cret"


async def test_without_a_token_only_loopback_hosts_are_served():
    async with cluster_client(1, 1) as (cluster, _):
        base = cluster.dashboard.address
        assert (await get(base + "/")).status == 200
        # a page from elsewhere reaching this port by DNS rebinding names its own host
        assert (await get(base + "/api/snapshot", Host="attacker.example")).status == 403


async def test_exposing_without_a_token_is_refused():
    server = trioflow.net.scheduler_server.SchedulerServer()
    with pytest.raises(ValueError, match="without a token"):
        await Dashboard(server).serve("0.0.0.0", 0)


async def test_clients_learn_the_link_and_show_it():
    async with cluster_client(1, 1) as (cluster, client):
        assert client.dashboard_link == cluster.dashboard.address + "/"
        assert cluster.dashboard.address in repr(client)
        assert cluster.address in repr(client)
    async with trioflow.open_local_cluster(1, 1, dashboard_address=None) as cluster:
        async with trioflow.AsyncClient(cluster.address) as client:
            assert client.dashboard_link == "" and cluster.dashboard is None


async def test_sync_client_repr_shows_address_workers_and_link():
    def check():
        with trioflow.Client(workers=2, threads_per_worker=1, processes=False) as client:
            return repr(client), client.dashboard_link

    text, link = await trio.to_thread.run_sync(check)
    assert link.startswith("http://127.0.0.1:")
    assert link in text and "2 workers" in text and "ws://" in text


async def test_a_local_cluster_logs_its_link(caplog):
    caplog.set_level(logging.INFO, logger="trioflow.client")
    async with open_client(None, workers=1, threads_per_worker=1, processes=False) as (
            client, cluster):
        assert cluster is not None and cluster.dashboard_link == client.dashboard_link
    assert f"dashboard at {client.dashboard_link}" in caplog.text


async def test_leaving_the_cluster_closes_open_event_streams():
    import urllib.request

    opened = threading.Event()
    ended: list[bytes] = []

    def listen(url):
        with urllib.request.urlopen(url, timeout=30) as resp:
            resp.readline()  # the first event has begun
            opened.set()
            while resp.readline():
                pass
            ended.append(b"eof")

    async with trio.open_nursery() as nursery:
        async with cluster_client(1, 1) as (cluster, _):
            url = cluster.dashboard.address + "/events"
            nursery.start_soon(trio.to_thread.run_sync, listen, url)
            await trio.to_thread.run_sync(opened.wait, 30)
        # the cluster is gone: the stream ended rather than hanging
    assert ended == [b"eof"]


async def test_a_taken_port_is_an_oserror():
    async with cluster_client(1, 1) as (cluster, _):
        taken = int(cluster.dashboard.address.rsplit(":", 1)[1])
        with pytest.raises(OSError):
            await Dashboard(cluster.scheduler).serve("127.0.0.1", taken)
