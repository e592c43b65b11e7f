"""Performance reports: finished runs as a Chrome trace, and an HTML summary.

The trace is the Trace Event Format's JSON (``{"traceEvents": [...]}``), which Perfetto
(ui.perfetto.dev) and chrome://tracing open: one process per worker, one thread per
worker thread, one complete ("X") event per run named by its function, with the key,
the parent task, the depth and the result's size in ``args``. The HTML summary is one
self-contained page (no script, no network): per-function and per-worker tables and a
timeline drawn as SVG; every user string in it is escaped.

Times are the workers' clocks (``time.time()`` when the run started), so runs on
different hosts line up only as well as their clocks do.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import protocol as p
from ..config import RUN_LOG_LENGTH
from .snapshot import key_split

logger = logging.getLogger(__name__)

#: one run as a RunsReply carries it
Run = Sequence[Any]  # [key, worker, thread, start, duration, nbytes, parent, depth, ok]


async def collect_runs(ask: Callable[[int, int], Awaitable[p.RunsReply]],
                       since: int) -> tuple[list[Run], int]:
    """Every run the scheduler still knows from run number ``since`` on, and how many it
    no longer kept (its run log is bounded); ``ask(since, limit)`` is ``Session.runs``.

    Cancellation: nothing is kept; ask again.
    """
    runs: list[Run] = []
    missed = 0
    while True:
        reply = await ask(since, 20_000)
        missed += reply.start - since
        runs.extend(reply.runs)
        since = reply.end
        if reply.end >= reply.total or not reply.runs:
            break
    if missed:
        logger.warning("performance report: %d runs were no longer kept by the scheduler "
                       "(it keeps the last %d)", missed, RUN_LOG_LENGTH)
    return runs, missed


async def task_stream(ask: Callable[[int, int], Awaitable[p.RunsReply]],
                      start: float | None = None, stop: float | None = None,
                      count: int | None = None) -> list[dict[str, Any]]:
    """``Client.get_task_stream``: the runs the scheduler still keeps as dask's records,
    oldest first; only the last ``count``, and only those that started at or after
    ``start`` and before ``stop`` (seconds since the epoch), when given.

    Cancellation: nothing is kept; ask again.
    """
    head = await ask(0, 0)
    since = head.start if count is None else max(head.start, head.total - max(0, count))
    runs, _ = await collect_runs(ask, since)
    return [task_record(run) for run in runs
            if (start is None or run[3] >= start) and (stop is None or run[3] < stop)]


def task_record(run: Run) -> dict[str, Any]:
    """One run as dask's task stream has it (``key``, ``worker``, ``thread``,
    ``nbytes``, ``status`` "OK" or "error", ``startstops`` with the ``compute``
    interval), plus trioflow's ``parent`` and ``depth`` of tasks launched from tasks."""
    key, worker, thread, start, duration, nbytes, parent, depth, ok = run
    return {"key": key, "worker": worker, "thread": thread, "nbytes": nbytes,
            "status": "OK" if ok else "error",
            "startstops": ({"action": "compute", "start": start, "stop": start + duration},),
            "parent": parent, "depth": depth}


def chrome_trace(runs: list[Run], *, missed: int = 0) -> dict[str, Any]:
    """The runs as a Trace Event Format document (timestamps in µs from the first run)."""
    origin = min((r[3] for r in runs), default=0.0)
    pids: dict[str, int] = {}
    tids: dict[tuple[str, str], int] = {}
    events: list[dict[str, Any]] = []
    for key, worker, thread, start, duration, nbytes, parent, depth, ok in runs:
        pid = pids.get(worker)
        if pid is None:
            pid = pids[worker] = len(pids) + 1
            events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                           "args": {"name": worker}})
        tid = tids.get((worker, thread))
        if tid is None:
            tid = tids[(worker, thread)] = len(tids) + 1
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                           "args": {"name": thread or "?"}})
        events.append({
            "ph": "X", "name": key_split(key), "cat": "task" if ok else "task,raised",
            "pid": pid, "tid": tid,
            "ts": round((start - origin) * 1e6, 3), "dur": round(duration * 1e6, 3),
            "args": {"key": key, "worker": worker, "thread": thread, "parent": parent,
                     "depth": depth, "nbytes": nbytes, "raised": not ok},
        })
    events.extend(_launches(runs, events, origin))
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"producer": "trioflow", "runs": len(runs), "runs_missed": missed,
                          "origin_epoch_s": origin}}


def _launches(runs: list[Run], events: list[dict[str, Any]],
              origin: float) -> list[dict[str, Any]]:
    """Flow events (arrows in Perfetto) from each parent's run to its children's, for
    the runs whose parent is in the report too."""
    slices = {e["args"]["key"]: e for e in events if e["ph"] == "X"}
    flows: list[dict[str, Any]] = []
    for n, child in enumerate(e for e in events if e["ph"] == "X" and e["args"]["parent"]):
        parent = slices.get(child["args"]["parent"])
        if parent is None:
            continue
        # the arrow leaves from inside the parent's slice (Perfetto binds it there)
        ts = min(max(child["ts"], parent["ts"]), parent["ts"] + parent["dur"])
        flows.append({"ph": "s", "id": n + 1, "cat": "launch", "name": "launch",
                      "pid": parent["pid"], "tid": parent["tid"], "ts": ts})
        flows.append({"ph": "f", "bp": "e", "id": n + 1, "cat": "launch", "name": "launch",
                      "pid": child["pid"], "tid": child["tid"], "ts": child["ts"]})
    return flows


def summary(runs: list[Run]) -> dict[str, Any]:
    """Per function and per worker: runs, total, mean and longest duration (seconds)."""
    by_fn: dict[str, list[float]] = {}
    by_worker: dict[str, list[float]] = {}
    raised: dict[str, int] = {}
    for key, worker, _thread, _start, duration, _nbytes, _parent, _depth, ok in runs:
        by_fn.setdefault(key_split(key), []).append(duration)
        by_worker.setdefault(worker, []).append(duration)
        if not ok:
            raised[key_split(key)] = raised.get(key_split(key), 0) + 1
    span = (max((r[3] + r[4] for r in runs), default=0.0)
            - min((r[3] for r in runs), default=0.0))

    def rows(groups: dict[str, list[float]]) -> list[dict[str, Any]]:
        return [{"name": name, "runs": len(ds), "total": sum(ds), "mean": sum(ds) / len(ds),
                 "max": max(ds), "raised": raised.get(name, 0)}
                for name, ds in sorted(groups.items())]

    return {"runs": len(runs), "span": span, "functions": rows(by_fn),
            "workers": rows(by_worker)}


def html_report(runs: list[Run], *, missed: int = 0, trace_name: str = "") -> str:
    """A self-contained HTML page summarising ``runs``."""
    info = summary(runs)
    esc = html.escape
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<title>trioflow performance report</title><style>",
             "body{font:13px system-ui,sans-serif;margin:1em}table{border-collapse:collapse}"
             "td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}"
             "svg text{font-size:10px}</style></head><body>",
             "<h1>trioflow performance report</h1>",
             f"<p>{info['runs']} runs over {info['span']:.3f} s"
             + (f"; {missed} older runs were no longer kept by the scheduler" if missed else "")
             + "</p>"]
    if trace_name:
        parts.append(f"<p>Timeline for Perfetto or chrome://tracing: <code>{esc(trace_name)}"
                     "</code></p>")
    for title, group in (("By function", info["functions"]), ("By worker", info["workers"])):
        parts.append(f"<h2>{title}</h2><table><tr><th>name</th><th>runs</th><th>total s</th>"
                     "<th>mean ms</th><th>max ms</th><th>raised</th></tr>")
        for r in group:
            raised_text = r["raised"] if title == "By function" else ""
            parts.append(f"<tr><td>{esc(r['name'])}</td><td>{r['runs']}</td>"
                         f"<td>{r['total']:.3f}</td><td>{r['mean'] * 1e3:.2f}</td>"
                         f"<td>{r['max'] * 1e3:.2f}</td><td>{raised_text}</td></tr>")
        parts.append("</table>")
    parts.append(_timeline_svg(runs))
    parts.append("</body></html>")
    return "\n".join(parts)


def _timeline_svg(runs: list[Run], width: int = 1000, lane: int = 12) -> str:
    if not runs:
        return "<p>no runs</p>"
    origin = min(r[3] for r in runs)
    span = max(r[3] + r[4] for r in runs) - origin or 1.0
    lanes = sorted({(r[1], r[2]) for r in runs})
    index = {k: i for i, k in enumerate(lanes)}
    fns = sorted({key_split(r[0]) for r in runs})
    colour = {fn: f"hsl({(i * 137) % 360},60%,55%)" for i, fn in enumerate(fns)}
    left = 220
    scale = (width - left) / span
    esc = html.escape
    out = [f"<h2>Timeline</h2><svg width='{width}' height='{len(lanes) * lane + 10}' "
           "xmlns='http://www.w3.org/2000/svg'>"]
    for (worker, thread), i in index.items():
        out.append(f"<text x='0' y='{i * lane + 10}'>{esc(worker)} / {esc(thread)}</text>")
    for r in runs[-20_000:]:  # a page, not a database: the trace has them all
        x = left + (r[3] - origin) * scale
        w = max(0.5, r[4] * scale)
        fn = key_split(r[0])
        fill, note = (colour[fn], "") if r[8] else ("#d9534f", " (raised)")
        out.append(f"<rect x='{x:.1f}' y='{index[(r[1], r[2])] * lane + 1}' width='{w:.1f}' "
                   f"height='{lane - 2}' fill='{fill}'><title>{esc(r[0])}{note}</title></rect>")
    out.append("</svg>")
    return "\n".join(out)


def write_report(path: str | os.PathLike[str], runs: list[Run], *, missed: int = 0) -> None:
    """Write the Chrome trace to ``path``; if it ends in ``.html``, write the HTML summary
    there and the trace beside it (``<path>.trace.json``)."""
    path = os.fspath(path)
    trace = chrome_trace(runs, missed=missed)
    if path.lower().endswith(".html"):
        trace_path = path + ".trace.json"
        with open(trace_path, "w", encoding="utf-8") as f:
            json.dump(trace, f)
        with open(path, "w", encoding="utf-8") as f:
            f.write(html_report(runs, missed=missed, trace_name=os.path.basename(trace_path)))
    else:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(trace, f)
