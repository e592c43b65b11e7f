"""``python -m benchmarks.scale [--sizes 10000 100000 1000000]``: scheduler cost per task.

Drives the sans-IO :class:`~trioflow.core.scheduler.Scheduler` directly, with the
real protocol messages, and measures what one task costs the scheduler as the run grows:

* one client session submits N no-op tasks, ``--batch`` ``SubmitTask`` messages per
  frame (the first frame also carries the ``RegisterFunction``), as ``Client.map`` does
  through ``Session.post`` and the batching writer; keys, payloads and results are
  built like ``Session.submit`` and the worker build them;
* two fake workers x 1 slot answer each ``ComputeTask`` with ``TaskFinished`` (an
  inline pickled ``None``), everything they hold in one frame per round, and answer
  ``StealTasks`` by returning the runs they have not "started";
* the client releases the keys it heard ``KeyFinished`` for with one ``ReleaseKeys`` per
  ``--release-batch`` keys, as ``Session`` does when a burst of futures dies.

All N tasks are submitted before the first one finishes, so the scheduler holds N
queued tasks at once. Two passes per size:

* **cpu**: ``time.process_time`` summed over the ``Scheduler.handle`` calls only
  (building messages and the fake peers are not counted; the garbage collector is on,
  as in a real scheduler, and its time inside ``handle`` counts; ``--no-gc`` turns it
  off to tell its share), the fastest of ``--repeats`` runs;
* **memory**: the same run under ``tracemalloc``: bytes held with all N tasks queued
  (after the last submit frame), the peak, and bytes still held when every task is
  finished and released, all relative to the state just before the first submit; plus
  the sizes of every container of the state after release (all should be empty).

Prints a table, writes ``benchmarks/results/scale.json``. No I/O, no threads: the
numbers are the scheduler core's own, and CPU time is robust to other load on the
machine (wall time is not reported).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import shlex
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from trioflow import protocol as p
from trioflow import serialize
from trioflow.core.events import Close, MessagesReceived, PeerJoined, Send
from trioflow.core.scheduler import Scheduler, SchedulerState

RESULTS = Path(__file__).resolve().parent / "results"
CLIENT = "client-0"
WORKERS = ("worker-0", "worker-1")


def noop(x: Any) -> None:
    return None


class Driver:
    """One scheduler core, one client and two 1-slot workers, all fake but the core."""

    def __init__(self, n: int, batch: int, release_batch: int, duration: float) -> None:
        self.n = n
        self.batch = batch
        self.release_batch = release_batch
        self.duration = duration
        self.sched = Scheduler()
        self.state = self.sched.state
        self.cpu = {"submit": 0.0, "run": 0.0, "release": 0.0}
        self.frames = {"submit": 0, "run": 0, "release": 0}
        self.inbox: dict[str, list[Any]] = {CLIENT: [], **{w: [] for w in WORKERS}}
        #: per worker: (key, run_id) of runs it holds, the first one "running"
        self.held: dict[str, list[tuple[str, int]]] = {w: [] for w in WORKERS}
        self.to_release: list[str] = []
        self.finished = 0
        self.released = 0
        self.fn_id, self.fn_blob = serialize.dumps_function(noop)
        self.result = serialize.dumps_value(None)
        self.prefix = "a1b2c3d4e5"  # Session: secrets.token_hex(5)

    # ---------------------------------------------------------------- plumbing

    def feed(self, event: Any, phase: str) -> None:
        t0 = time.process_time()
        out = self.sched.handle(event)
        self.cpu[phase] += time.process_time() - t0
        self.frames[phase] += 1
        for cmd in out:
            if type(cmd) is Send:
                self.inbox[cmd.to].append(cmd.message)
            elif type(cmd) is Close:
                raise RuntimeError(f"the scheduler closed {cmd.to}: {cmd.reason}")

    def join(self) -> None:
        self.feed(PeerJoined(CLIENT, p.Hello("client", CLIENT, [1])), "submit")
        for w in WORKERS:
            self.feed(PeerJoined(w, p.Hello("worker", w, [1], nthreads=1,
                                            data_address=f"ws://127.0.0.1:0/{w}")), "submit")
        self.feed(MessagesReceived(CLIENT, [p.RegisterFunction(self.fn_id, self.fn_blob)]),
                  "submit")

    def submit_all(self) -> None:
        never = _never
        for start in range(0, self.n, self.batch):
            frame = []
            for i in range(start, min(self.n, start + self.batch)):
                payload, deps = serialize.dumps_payload((i,), {}, never)
                frame.append(p.SubmitTask(f"noop-{self.prefix}-{i + 1}", self.fn_id, payload,
                                          deps))
            self.feed(MessagesReceived(CLIENT, frame), "submit")
            del frame

    def _worker_frame(self, w: str) -> list[Any]:
        held = self.held[w]
        returned: list[tuple[str, int]] = []
        for msg in self.inbox[w]:
            t = type(msg)
            if t is p.ComputeTask:
                held.append((msg.key, msg.run_id))
            elif t is p.StealTasks:
                # the first run held has started; the others are still queued here
                wanted = set(zip(msg.keys, msg.run_ids))
                keep = held[:1]
                for run in held[1:]:
                    (returned if run in wanted else keep).append(run)
                held[:] = keep
                # a real worker answers at once, before running what it kept
                self.feed(MessagesReceived(w, [p.TasksReturned([k for k, _ in returned],
                                                               [r for _, r in returned])]),
                          "run")
                returned = []
        self.inbox[w].clear()
        frame = [p.TaskFinished(key, run_id, len(self.result), self.result, self.duration,
                                "NoneType") for key, run_id in held]
        self.finished += len(held)
        held.clear()
        return frame

    def _client_read(self) -> None:
        for msg in self.inbox[CLIENT]:
            if type(msg) is p.KeyFinished:
                self.to_release.append(msg.key)
            elif type(msg) is not p.FreeKeys:
                raise RuntimeError(f"unexpected message to the client: {msg!r}")
        self.inbox[CLIENT].clear()

    def _release(self, force: bool) -> None:
        while len(self.to_release) >= self.release_batch or (force and self.to_release):
            keys = self.to_release[:self.release_batch]
            del self.to_release[:self.release_batch]
            self.released += len(keys)
            self.feed(MessagesReceived(CLIENT, [p.ReleaseKeys(keys)]), "release")

    def run_all(self) -> None:
        idle_rounds = 0
        while self.released < self.n:
            progress = False
            for w in WORKERS:
                frame = self._worker_frame(w)
                if frame:
                    progress = True
                    self.feed(MessagesReceived(w, frame), "run")
                self.inbox[w] = [m for m in self.inbox[w] if type(m) is not p.FreeKeys]
            self._client_read()
            self._release(force=self.finished >= self.n)
            idle_rounds = 0 if progress else idle_rounds + 1
            if idle_rounds > 3:
                raise RuntimeError(f"stuck: {self.finished} finished, {self.released} released, "
                                   f"{self.state.statistics()}")
        assert self.finished == self.n, (self.finished, self.n)  # nothing ran twice
        for w in WORKERS:  # the last FreeKeys (a real worker would drop the results)
            self.inbox[w] = [m for m in self.inbox[w] if type(m) is not p.FreeKeys]


def _never(obj: Any) -> bool:
    return False


def containers(state: SchedulerState) -> dict[str, int]:
    """Entries left in every container of the scheduler state (all 0 when idle)."""
    sizes = {
        "tasks": len(state.tasks), "ready": len(state.ready),
        "unplaceable": len(state.unplaceable), "seceded": len(state.seceded),
        "deadlocks": len(state.deadlocks),
        "workers.processing": sum(len(w.processing) for w in state.workers.values()),
        "workers.has_what": sum(len(w.has_what) for w in state.workers.values()),
        "peers.wants": sum(len(pr.wants) for pr in state.peers.values()),
    }
    # bounded by the number of functions, not of tasks
    sizes["functions"] = len(state.functions)
    sizes["durations"] = len(state.durations)
    return sizes


def measure_cpu(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """The fastest of ``args.repeats`` runs (other load on the machine only adds)."""
    best: dict[str, Any] | None = None
    for _ in range(args.repeats):
        d = Driver(n, args.batch, args.release_batch, args.duration)
        d.join()
        d.cpu = dict.fromkeys(d.cpu, 0.0)
        d.frames = dict.fromkeys(d.frames, 0)
        d.submit_all()
        d.run_all()
        us = {k: v / n * 1e6 for k, v in d.cpu.items()}
        us["total"] = sum(d.cpu.values()) / n * 1e6
        if best is None or us["total"] < best["us_per_task"]["total"]:
            best = {"us_per_task": {k: round(v, 2) for k, v in us.items()},
                    "frames": d.frames, "leftover": containers(d.state)}
        del d
        gc.collect()
    assert best is not None
    best["repeats"] = args.repeats
    return best


def measure_memory(n: int, args: argparse.Namespace) -> dict[str, Any]:
    d = Driver(n, args.batch, args.release_batch, args.duration)
    d.join()
    gc.collect()
    objects0 = len(gc.get_objects())
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    d.submit_all()
    gc.collect()
    queued = tracemalloc.get_traced_memory()[0] - base
    queued_objects = len(gc.get_objects()) - objects0
    stats = d.state.statistics()["tasks"]
    d.run_all()
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    top = None
    if args.top:
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)])
        top = [str(s) for s in snap.statistics("lineno")[:args.top]]
    tracemalloc.stop()
    retained = current - base
    gc.collect()
    return {
        "queued_at_peak": stats,
        "bytes_per_queued_task": round(queued / n, 1),
        "gc_objects_per_queued_task": round(queued_objects / n, 2),
        "peak_bytes_per_task": round((peak - base) / n, 1),
        "retained_bytes": retained,
        "bytes_per_released_task": round(retained / n, 2),
        "gc_objects_left": len(gc.get_objects()) - objects0,
        "leftover": containers(d.state),
        **({"top_retained": top} if top else {}),
    }


def measure_cluster(n: int, chunk: int) -> dict[str, Any]:
    """``n`` no-op tasks on a real cluster: a ``trioflow-scheduler`` process, two
    ``trioflow-worker --nthreads 1`` processes, and a ``Client`` here that maps ``chunk``
    tasks at a time, keeping two chunks in flight and gathering (then dropping) the
    older one. Reports wall time, tasks/s, and the scheduler process's CPU and RSS."""
    import os
    import subprocess

    import trioflow

    from .harness import REPO
    from .procfs import cpu_seconds, peak_rss_mb
    from .task_bodies import noop as body

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))

    def cli(fn: str, *argv: str, **kw: Any) -> subprocess.Popen[str]:
        code = f"import sys; from trioflow.cli import {fn}; sys.exit({fn}(sys.argv[1:]))"
        return subprocess.Popen([sys.executable, "-c", code, *argv], cwd=REPO, env=env,
                                text=True, **kw)

    def rss_mb(pid: int) -> float:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            line = next(x for x in f if x.startswith("VmRSS:"))
        return round(int(line.split()[1]) * 1024 / 1e6, 1)

    sched = cli("scheduler_main", "--port", "0", "--log-level", "warning",
                stdout=subprocess.PIPE)
    procs = [sched]
    try:
        assert sched.stdout is not None
        address = sched.stdout.readline().strip()
        procs += [cli("worker_main", address, "--nthreads", "1", "--name", f"worker-{i}")
                  for i in range(2)]
        with trioflow.Client(address) as client:
            client.wait_for_workers(2, timeout=60)
            client.gather(client.map(body, range(1000)))  # warm up
            rss0, cpu0 = rss_mb(sched.pid), cpu_seconds(sched.pid)
            samples = []
            t0 = time.perf_counter()
            inflight = client.map(body, range(min(chunk, n)))
            done = 0
            while inflight:
                start = done + len(inflight)
                nxt = client.map(body, range(start, min(n, start + chunk))) if start < n else []
                values = client.gather(inflight)
                if values[-1] != done + len(values) - 1:
                    raise AssertionError("wrong values")
                done += len(values)
                del values
                inflight = nxt
                samples.append({"done": done, "s": round(time.perf_counter() - t0, 2),
                                "rss_mb": rss_mb(sched.pid)})
                print(f"    cluster: {done:,} done in {samples[-1]['s']:.0f} s, "
                      f"scheduler RSS {samples[-1]['rss_mb']} MB", flush=True)
            wall = time.perf_counter() - t0
            time.sleep(1.0)  # let the last ReleaseKeys arrive
            cpu = cpu_seconds(sched.pid) - cpu0
            return {"tasks": n, "chunk": chunk, "wall_s": round(wall, 1),
                    "tasks_per_s": round(n / wall), "scheduler_cpu_us_per_task": round(cpu / n * 1e6, 1),
                    "scheduler_rss_mb": {"before": rss0, "after": rss_mb(sched.pid),
                                         "peak": peak_rss_mb(sched.pid)},
                    "samples": samples}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'tasks':>9} | {'submit':>7} {'run':>7} {'release':>7} {'total':>7} µs/task"
            f" | {'B/queued':>9} {'objs/q':>6} {'B peak':>8} | {'B/released':>10} "
            f"{'objs left':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        us = r["cpu"]["us_per_task"] if r.get("cpu") else {}
        m = r.get("memory") or {}

        def f(v: Any, w: int, fmt: str = ".1f") -> str:
            return f"{v:>{w}{fmt}}" if v is not None else f"{'-':>{w}}"

        lines.append(
            f"{r['tasks']:>9,} | {f(us.get('submit'), 7)} {f(us.get('run'), 7)} "
            f"{f(us.get('release'), 7)} {f(us.get('total'), 7)}        "
            f" | {f(m.get('bytes_per_queued_task'), 9, '.0f')} "
            f"{f(m.get('gc_objects_per_queued_task'), 6)} {f(m.get('peak_bytes_per_task'), 8, '.0f')}"
            f" | {f(m.get('bytes_per_released_task'), 10, '.2f')} "
            f"{f(m.get('gc_objects_left'), 9, 'd')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=1000, help="SubmitTask messages per frame")
    parser.add_argument("--release-batch", type=int, default=1000, help="keys per ReleaseKeys")
    parser.add_argument("--duration", type=float, default=1e-5,
                        help="run duration the workers report (drives prefetch)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="CPU passes per size; the fastest is reported")
    parser.add_argument("--no-gc", action="store_true",
                        help="disable the cyclic garbage collector (to tell its share)")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU pass")
    parser.add_argument("--top", type=int, default=0,
                        help="show the N lines holding most memory after release")
    parser.add_argument("--cluster", type=int, metavar="N",
                        help="instead: run N no-op tasks on a real cluster (scheduler and 2 "
                        "worker processes x 1 thread) and add it to the results JSON")
    parser.add_argument("--chunk", type=int, default=100_000,
                        help="tasks per client.map in the --cluster run")
    parser.add_argument("--output", type=Path, default=RESULTS / "scale.json")
    args = parser.parse_args(argv)
    if args.cluster:
        run = measure_cluster(args.cluster, args.chunk)
        run["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        run["command"] = "python -m benchmarks.scale " + shlex.join(
            argv if argv is not None else sys.argv[1:])
        print(json.dumps({k: v for k, v in run.items() if k != "samples"}, indent=1))
        old = json.loads(args.output.read_text(encoding="utf-8")) if args.output.exists() else {}
        old["cluster"] = run
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(old, indent=1) + "\n", encoding="utf-8")
        return 0
    if args.no_gc:
        gc.disable()
    rows = []
    for n in args.sizes:
        row: dict[str, Any] = {"tasks": n}
        if not args.no_cpu:
            row["cpu"] = measure_cpu(n, args)
        if not args.no_memory:
            row["memory"] = measure_memory(n, args)
        rows.append(row)
        print(table([row]).splitlines()[-1] if len(rows) > 1 else table([row]), flush=True)
        for line in (row.get("memory") or {}).get("top_retained", []):
            print("    " + line)
    cpu_rows = [r for r in rows if r.get("cpu")]
    flat = None
    if len(cpu_rows) > 1:
        first, last = cpu_rows[0]["cpu"]["us_per_task"]["total"], cpu_rows[-1]["cpu"]["us_per_task"]["total"]
        flat = round(last / first, 2)
        print(f"µs/task at {cpu_rows[-1]['tasks']:,} / at {cpu_rows[0]['tasks']:,}: {flat}")
    from .report import describe_machine

    results = {
        "meta": {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "command": "python -m benchmarks.scale " + shlex.join(argv if argv is not None
                                                                       else sys.argv[1:]),
                 "batch": args.batch, "repeats": args.repeats, "release_batch": args.release_batch,
                 "duration": args.duration,
                 "gc": not args.no_gc, "machine": describe_machine()},
        "growth_total_us": flat, "rows": rows}
    if args.output.exists():  # keep the last --cluster run
        cluster = json.loads(args.output.read_text(encoding="utf-8")).get("cluster")
        if cluster:
            results["cluster"] = cluster
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
