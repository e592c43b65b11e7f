"""client.performance_report: the runs of a block as a Chrome trace, or an HTML summary."""

from __future__ import annotations

import json

import trio

import trioflow

from .conftest import cluster_client
from .tasks import inc


def boom(x):
    raise ValueError(f"boom {x}")


def parent(n):
    client = trioflow.get_client()
    futures = client.map(inc, range(n))
    trioflow.secede()
    total = sum(client.gather(futures))
    trioflow.rejoin()
    return total


async def test_a_block_becomes_a_chrome_trace(tmp_path):
    async with cluster_client(2, 2) as (_, client):
        await client.gather(client.map(inc, range(5)))  # before the block: not in it
        path = tmp_path / "run.json"
        async with client.performance_report(path):
            outer = client.submit(parent, 4, key="parent-1")
            assert await outer == 10
            await client.gather(client.map(inc, range(100, 103)))
            failing = client.submit(boom, 1, retries=1)  # raises twice: two runs
            await trioflow.wait_async([failing])
        trace = json.loads(path.read_text())
        runs = [e for e in trace["traceEvents"] if e["ph"] == "X"]
        raised = [e for e in runs if e["args"]["raised"]]
        assert [e["name"] for e in raised] == ["boom", "boom"]
        runs = [e for e in runs if not e["args"]["raised"]]
        assert sorted(e["name"] for e in runs) == ["inc"] * 7 + ["parent"]
        children = [e for e in runs if e["args"]["parent"] == "parent-1"]
        assert len(children) == 4 and all(e["args"]["depth"] == 1 for e in children)
        (top,) = [e for e in runs if e["name"] == "parent"]
        # the parent ran (seceded) around its children: its span holds theirs
        assert all(top["ts"] <= e["ts"] and e["ts"] + e["dur"] <= top["ts"] + top["dur"]
                   for e in children)
        names = {(e["pid"], e["tid"]): e["args"]["name"] for e in trace["traceEvents"]
                 if e["ph"] == "M" and e["name"] == "thread_name"}
        workers = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
                   if e["ph"] == "M" and e["name"] == "process_name"}
        for e in runs:
            assert workers[e["pid"]] == e["args"]["worker"]
            assert names[(e["pid"], e["tid"])] == e["args"]["thread"]
        assert trace["otherData"]["runs_missed"] == 0


async def test_an_html_path_gets_a_summary_with_names_escaped(tmp_path):
    async with cluster_client(1, 1) as (cluster, client):
        path = tmp_path / "run.html"
        hostile = "<script>alert(1)</script>"
        async with client.performance_report(path):
            await client.submit(inc, 1, key=hostile)
            await client.gather(client.map(inc, range(3)))
        page = path.read_text()
        assert hostile not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "By function" in page and "<svg" in page
        trace = json.loads((tmp_path / "run.html.trace.json").read_text())
        assert {e["args"]["key"] for e in trace["traceEvents"] if e["ph"] == "X"} >= {hostile}

        def sync_report():  # the blocking client's form, on the same cluster
            with trioflow.Client(cluster.address) as sync_client:
                with sync_client.performance_report(tmp_path / "sync.json"):
                    sync_client.gather(sync_client.map(inc, range(4)))

        await trio.to_thread.run_sync(sync_report)
        trace = json.loads((tmp_path / "sync.json").read_text())
        assert len([e for e in trace["traceEvents"] if e["ph"] == "X"]) == 4
