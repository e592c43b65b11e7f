"""The dashboard's read-only view of the scheduler state, and the run log's handler."""

from __future__ import annotations

from collections import deque

from trioflow import protocol as p
from trioflow.core.events import Send
from trioflow.core.scheduler import timeline
from trioflow.core.scheduler.records import TaskRecord, TaskStatus, WorkerRecord
from trioflow.core.scheduler.state import SchedulerState
from trioflow.dashboard.snapshot import Observer, _names, key_split
from trioflow.dashboard.trace import chrome_trace, summary


def finish(state, key, worker="w1", parent="", depth=0, start=100.0, duration=0.5, ok=True):
    state.runs.append((key, worker, "t-1", start, duration, 8 if ok else 0, parent, depth, ok))
    state.runs_total += 1


def make_state(log_length=100):
    state = SchedulerState()
    state.runs = deque(maxlen=log_length)
    state.workers["w1"] = WorkerRecord("w1", "worker-one", 2, "")
    return state


def test_key_split_and_its_fast_form_agree():
    keys = ["inc-1", "inc-ab-3", "plain", "-lead", "", "a-", "<script>alert(1)</script>"]
    assert [key_split(k) for k in keys] == ["inc", "inc", "plain", "-lead", "", "a",
                                            "<script>alert(1)</script>"]
    assert _names(keys) == [key_split(k) for k in keys]


def test_runs_fold_in_incrementally_with_the_tree():
    state = make_state()
    obs = Observer(state)
    finish(state, "root-1")
    finish(state, "leaf-1", parent="root-1", depth=1)
    finish(state, "leaf-2", parent="root-1", depth=1)
    snap = obs.snapshot(1.0, since=0)
    assert [(r["fn"], r["done"]) for r in snap["progress"]] == [("leaf", 2), ("root", 1)]
    assert {(e["depth"], e["parent"], e["fn"]): e["done"] for e in snap["tree"]} == {
        (0, "", "root"): 1, (1, "root", "leaf"): 2}
    assert [r[0] for r in snap["stream"]] == [0, 1, 2]
    assert snap["stream"][0][1:5] == ["worker-one", "t-1", "root", "root-1"]
    finish(state, "leaf-3", parent="root-1", depth=1)
    finish(state, "leaf-4", parent="root-1", depth=1, ok=False)
    again = obs.snapshot(2.0, since=snap["folded"])
    assert [r[0] for r in again["stream"]] == [3, 4]  # only what is new to this reader
    assert [r[7] for r in again["stream"]] == [True, False]  # the second one raised
    assert again["result_bytes"] == 32
    (leaf,) = [r for r in again["progress"] if r["fn"] == "leaf"]
    assert (leaf["done"], leaf["raised"]) == (3, 1)
    assert {(e["depth"], e["fn"]): e["done"] for e in again["tree"]}[(1, "leaf")] == 3


def test_runs_that_left_the_log_are_counted_as_missed():
    state = make_state(log_length=5)
    obs = Observer(state, stream_length=3)
    for i in range(12):
        finish(state, f"f-{i}")
    snap = obs.snapshot(1.0, since=0)
    assert snap["runs_missed"] == 7 and snap["progress"][0]["done"] == 5
    assert [r[4] for r in snap["stream"]] == ["f-9", "f-10", "f-11"]


def test_live_tasks_workers_and_waits():
    state = make_state()
    w = state.workers["w1"]
    waiter = TaskRecord("waiter-1", "f", b"", (), (0, 0, 1), "c1")
    waiter.status, waiter.worker = TaskStatus.PROCESSING, "w1"
    waiter.blocked_on = {"dep-1"}
    dep = TaskRecord("dep-1", "f", b"", (), (0, 0, 2), "c1", parent="waiter-1", depth=1)
    done = TaskRecord("dep-0", "f", b"", (), (0, 0, 0), "c1")
    done.status, done.nbytes = TaskStatus.MEMORY, 1000
    state.tasks.update({"waiter-1": waiter, "dep-1": dep, "dep-0": done})
    w.processing["waiter-1"] = waiter
    w.occupying, w.blocked = 1, 1
    w.has_what.add("dep-0")
    snap = Observer(state).snapshot(1.0)
    assert snap["waits"] == [["waiter-1", "dep-1"]]
    (worker,) = snap["workers"]
    assert (worker["busy"], worker["blocked"], worker["memory"]) == (0, 1, 1000)
    assert snap["tasks"] == {"processing": 1, "waiting": 1, "memory": 1}
    live = {(e["depth"], e["parent"], e["fn"]): e["live"] for e in snap["tree"]}
    assert live == {(0, "", "waiter"): 1, (1, "waiter", "dep"): 1}


def test_the_full_pass_is_spaced_out():
    state = make_state()
    obs = Observer(state, scan_share=1e-9)  # any pass makes the next one wait long
    obs.snapshot(1.0)
    state.tasks["x-1"] = TaskRecord("x-1", "f", b"", (), (0, 0, 0), "c1")
    snap = obs.snapshot(1.5)
    assert snap["tasks"] == {} and snap["scan_age"] == 0.5  # the old counts, and their age


def test_the_runs_handler_answers_from_since_and_says_what_was_forgotten():
    state = make_state(log_length=4)
    for i in range(10):
        finish(state, f"f-{i}")
    timeline.runs_request(state, "c1", p.RunsRequest(7, 2, 3))
    (cmd,) = state.take_commands()
    assert isinstance(cmd, Send) and cmd.to == "c1"
    reply = cmd.message
    assert (reply.request_id, reply.start, reply.end, reply.total) == (7, 6, 9, 10)
    assert [r[0] for r in reply.runs] == ["f-6", "f-7", "f-8"]
    assert reply.runs[0][1] == "worker-one"
    timeline.runs_request(state, "c1", p.RunsRequest(8, 10, 100))
    (cmd,) = state.take_commands()
    assert (cmd.message.start, cmd.message.end, cmd.message.runs) == (10, 10, [])


def test_trace_and_summary_of_runs():
    runs = [["a-1", "w", "t1", 10.0, 0.5, 1, "", 0, True],
            ["b-1", "w", "t2", 10.25, 0.25, 0, "a-1", 1, False]]
    trace = chrome_trace(runs)
    xs = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert [(e["name"], e["ts"], e["dur"]) for e in xs] == [("a", 0.0, 500000.0),
                                                          ("b", 250000.0, 250000.0)]
    assert xs[0]["tid"] != xs[1]["tid"] and xs[0]["pid"] == xs[1]["pid"]
    # an arrow from the parent's slice to the child's
    start, end = (e for e in trace["traceEvents"] if e["ph"] in "sf")
    assert (start["tid"], start["ts"], end["tid"], end["ts"]) == (xs[0]["tid"], 250000.0,
                                                                  xs[1]["tid"], 250000.0)
    assert start["id"] == end["id"]
    assert [e["args"]["raised"] for e in xs] == [False, True]
    info = summary(runs)
    assert info["span"] == 0.5 and [f["name"] for f in info["functions"]] == ["a", "b"]
    assert [f["raised"] for f in info["functions"]] == [0, 1]
