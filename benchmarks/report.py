"""Summaries of raw runs: the JSON results file and the markdown in docs/benchmarks.md.

The primary number of every row is ``seconds`` (lower is better); tables show it in
the row's unit (ms/call, tasks/s, MB/s or s). Per system: **median** and **best** over
the repeats (best = the fastest run). **ratio** = dask (or Ray) median seconds / trioflow median
seconds, so > 1 means trioflow is faster, whatever the unit. Targets are checked
against trioflow's median.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

from .harness import REPO

DOC = REPO / "docs" / "benchmarks.md"
#: the fixed introduction of docs/benchmarks.md (method, commands, row meanings)
INTRO = Path(__file__).with_name("doc_intro.md")
#: everything in docs/benchmarks.md after this line is hand-written and kept
NOTES_MARKER = "<!-- notes: everything below this line is kept when the file is regenerated -->"

#: row -> (comparison, value) in the row's display unit, for trioflow's median (the
#: latency, map, fan-out, fib(20) and async fib(25) targets are issue 12's)
TARGETS: dict[str, tuple[str, float]] = {
    "start_to_first_result": ("<=", 0.3), "latency": ("<=", 0.5),
    "map_10k": (">=", 25_000), "map_100k": (">=", 25_000), "fanout_1000": (">=", 20_000),
    "fib_15": ("<=", 0.3), "fib_18": ("<=", 1.0), "fib_20": ("<=", 1.5),
    "async_fib_25": ("<=", 15.0),
    "w2w_bytes_100mb": (">=", 1000), "w2w_numpy_100mb": (">=", 1000),
    "scatter_100mb": (">=", 500), "gather_100mb": (">=", 1000),
    "gather_numpy_100mb": (">=", 1000),
}
VERSIONED = ("trioflow", "trio", "trio-websocket", "cloudpickle", "msgpack", "dask",
             "distributed", "tornado", "numpy", "ray")


def display(seconds: float, unit: str, work: float) -> float:
    """``seconds`` of a run in the row's display unit."""
    if unit == "ms/call":
        return seconds * 1e3 / work
    if unit.endswith("/s"):
        return work / seconds
    return seconds


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value >= 0.01 else f"{value:.2g}"


def describe_machine() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python, package versions and the git commit."""
    def first(path: str, prefix: str) -> str:
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.startswith(prefix):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    git = subprocess.run(["git", "describe", "--always", "--dirty=+local-changes"],
                         cwd=REPO, capture_output=True, text=True, check=False)
    return {
        "cpu": first("/proc/cpuinfo", "model name"), "cores": os.cpu_count(),
        "memory_gib": round(int(first("/proc/meminfo", "MemTotal").split()[0]) / 2**20, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "versions": versions,
        "commit": git.stdout.strip() or "?",
    }


def summarize(runs: list[dict[str, Any]], workloads: list[str]) -> dict[str, Any]:
    """Group raw runs into rows x systems with min/median, resources, ratio and target."""
    rows: dict[str, dict[str, Any]] = {}
    for wl in workloads:
        wl_runs = [r for r in runs if r["workload"] == wl]
        names = list(dict.fromkeys(name for r in wl_runs for name in (r.get("rows") or {})))
        for name in names or [wl]:
            rows[name] = _row(name, wl, wl_runs)
    return rows


def _row(name: str, workload: str, wl_runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"workload": workload, "unit": None, "work": None, "systems": {}}
    for system in dict.fromkeys(r["system"] for r in wl_runs):
        runs = [r for r in wl_runs if r["system"] == system]
        ok = [r["rows"][name] for r in runs if r["status"] == "ok" and name in r["rows"]]
        failed = [r for r in runs if r["status"] != "ok"]
        entry: dict[str, Any] = {"runs": len(runs), "ok": len(ok),
                                 "failures": [f"{r['status']}: {r.get('error', '')}".strip(": ")
                                              for r in failed]}
        if ok:
            unit, work = ok[0]["unit"], ok[0]["work"]
            out["unit"], out["work"] = unit, work
            secs = sorted(x["seconds"] for x in ok)
            med = statistics.median(secs)
            entry.update(status="ok" if not failed else "partial", min_s=secs[0], median_s=med,
                         best=display(secs[0], unit, work), median=display(med, unit, work))
            extras = {k for x in ok for k, v in x.items()
                      if k not in ("seconds", "unit", "work") and isinstance(v, int | float)}
            entry["extras"] = {k: statistics.median(x[k] for x in ok if x.get(k) is not None)
                               for k in sorted(extras)}
        else:
            timeouts = [r.get("timeout_s") or 0 for r in failed if r["status"] == "timeout"]
            # every run ended fine but none measured this row: the system lacks the feature
            # (Ray cannot pin a task to a worker), which is not an error
            unsupported = not failed and bool(runs)
            entry["status"] = ("timeout/hang" if timeouts
                               else "n/a (not supported)" if unsupported else "error")
            if timeouts:
                entry["timeout_s"] = max(timeouts)
        res = [r["resources"] for r in runs if r.get("resources")]
        for key in ("peak_threads", "baseline_threads", "rss_client_mb"):
            vals = [x[key] for x in res if x.get(key) is not None]
            entry[key] = max(vals) if vals else None
        entry["at_kill"] = any(x.get("at_kill") for x in res)
        worker_rss = [v for x in res for v in x.get("rss_workers_mb") or [] if v is not None]
        entry["rss_worker_mb"] = max(worker_rss) if worker_rss else None
        out["systems"][system] = entry
    tf = out["systems"].get("trioflow", {})
    for other, suffix in (("dask", ""), ("ray", "_ray")):
        o = out["systems"].get(other, {})
        out["ratio" + suffix] = (o["median_s"] / tf["median_s"]
                                 if "median_s" in tf and "median_s" in o else None)
        # it never finished: its time is at least the timeout (cluster start included)
        out["ratio_at_least" + suffix] = (o["timeout_s"] / tf["median_s"]
                                          if "median_s" in tf and o.get("timeout_s") else None)
    if name in TARGETS:
        op, value = TARGETS[name]
        got = tf.get("median")
        met = None if got is None else (got <= value if op == "<=" else got >= value)
        factor = None if got is None else (got / value if op == "<=" else value / got)
        out["target"] = {"op": op, "value": value, "met": met, "factor": factor}
    return out


def _cell(entry: dict[str, Any] | None, key: str) -> str:
    if not entry:
        return "-"
    if "median" not in entry:
        after = f" ({entry['timeout_s']:.0f} s)" if entry.get("timeout_s") else ""
        return entry["status"] + after
    text = fmt(entry[key])
    return text + (" (some runs failed)" if entry["status"] == "partial" and key == "median" else "")


def tables(results: dict[str, Any]) -> str:
    """The markdown tables of a results document."""
    systems = results["meta"]["systems"]
    summary = results["summary"]
    head = ["benchmark", "unit", "target"]
    for s in systems:
        head += [f"{s} median", f"{s} best"]
    ratios = [(s, "" if s == "dask" else "_ray") for s in ("dask", "ray") if s in systems]
    head += [f"ratio {s}/trioflow" for s, _ in ratios]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in summary.items():
        target = row.get("target")
        tcell = "-" if not target else (
            f"{target['op']} {fmt(target['value'])} "
            + ("" if target["met"] is None else ("met" if target["met"] else
                                                  f"**missed x{target['factor']:.2g}**")))
        cells = [f"`{name}`", row["unit"] or "-", tcell]
        for s in systems:
            e = row["systems"].get(s)
            cells += [_cell(e, "median"), _cell(e, "best") if e and "best" in e else "-"]
        for _, sfx in ratios:
            ratio, least = row.get("ratio" + sfx), row.get("ratio_at_least" + sfx)
            cells.append(f"{ratio:.2f}" if ratio is not None else
                         f"> {least:.0f}" if least else "-")
        lines.append("| " + " | ".join(cells) + " |")
    out = ["## Results", "", *lines, ""]
    # results from before --cluster existed were all in-process
    in_process = results["meta"].get("cluster", "in-process") == "in-process"
    host = "client+sched" if in_process else "client"
    res_head = ["benchmark"]
    for s in systems:
        res_head += [f"{s} peak threads/worker (baseline)", f"{s} peak RSS {host} / worker MB"]
    out += ["## Threads and memory", "",
            "Peak threads: `Threads:` of the busiest worker process, sampled every 5 ms from "
            "the benchmark process (baseline = before the workload); for a run killed on "
            "timeout, the count just before the kill. Peak RSS: `VmHWM` of the benchmark "
            "process (" + ("client and scheduler live there" if in_process else
                          "the client; the scheduler is a process of its own") +
            ") and of the largest worker; rows of "
            "one workload (the data rows) share one run, so they show the same numbers.",
            "", "| " + " | ".join(res_head) + " |", "|" + "---|" * len(res_head)]
    for name, row in summary.items():
        if not any(e.get("rss_client_mb") for e in row["systems"].values()):
            continue  # startup: nothing measured inside
        cells = [f"`{name}`"]
        for s in systems:
            e = row["systems"].get(s)
            if not e:
                cells += ["-", "-"]
                continue
            cells.append(f"{fmt(e['peak_threads'])} when killed" if e.get("at_kill") else
                         f"{fmt(e['peak_threads'])} ({fmt(e['baseline_threads'])})")
            cells.append(f"{fmt(e['rss_client_mb'])} / {fmt(e['rss_worker_mb'])}")
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "## Details", "", "Medians of per-run extras (see each workload's docstring):",
            ""]
    for name, row in summary.items():
        for s in systems:
            e = row["systems"].get(s) or {}
            extras = ", ".join(f"{k}={fmt(v)}" for k, v in (e.get("extras") or {}).items())
            fails = "; ".join(sorted(set(e.get("failures") or [])))
            if extras or fails:
                out.append(f"- `{name}` {s}: {extras}{' — failed runs: ' + fails if fails else ''}")
    return "\n".join(out) + "\n"


def render_doc(results: dict[str, Any]) -> str:
    """docs/benchmarks.md: the fixed introduction, run facts, tables, then kept notes."""
    meta = results["meta"]
    m = meta["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    facts = [
        "## This run", "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}` ({meta['elapsed_min']:.1f} min)",
        f"- repeats: {meta['repeats']} per system (interleaved), capped per workload: "
        + ", ".join(f"{k} {v}" for k, v in meta["repeat_caps"].items()),
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, {m['os']}, "
        f"Python {m['python']}",
        f"- versions: {versions}; trioflow commit {m['commit']}",
        "- CPU used by *other* programs while runs were going, in cores (min / mean / max "
        f"over runs): {' / '.join(fmt(meta['foreign_load'][i]) for i in (0, 2, 1))} of "
        f"{m['cores']} (0 = the machine was otherwise idle)",
        *[f"- re-measured later: {', '.join(x['workloads'])} on {x['date']} with "
          f"`{x['command']}` (commit {x['commit']}; other programs' CPU "
          f"{fmt(x['foreign_load'][2])} cores on average)" for x in meta.get("merged", [])],
        "- skipped: " + ("; ".join(meta["skipped"]) or "nothing"), "",
    ]
    notes = ""
    if DOC.exists():
        old = DOC.read_text(encoding="utf-8")
        if NOTES_MARKER in old:
            notes = old.split(NOTES_MARKER, 1)[1].lstrip("\n")
    return (INTRO.read_text(encoding="utf-8").rstrip() + "\n\n" + "\n".join(facts) + "\n" + tables(results)
            + "\n" + NOTES_MARKER + "\n\n" + notes)


def write_doc(results: dict[str, Any]) -> Path:
    """Regenerate docs/benchmarks.md from ``results``, keeping its hand-written notes."""
    DOC.write_text(render_doc(results), encoding="utf-8")
    return DOC
