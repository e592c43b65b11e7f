"""``python -m benchmarks [--compare dask] [--quick] [--only NAME ...] [--repeats N]``.

Runs every selected workload on trioflow (and on the systems named by ``--compare``
when they import), one fresh subprocess and cluster per run, interleaved per workload:
trioflow, dask, trioflow, dask... Prints each run as it finishes and a summary table at
the end, writes the raw runs and the summary as JSON, and (after a full run) regenerates
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from . import report
from .harness import REPO, Outcome, compile_bytecode, run_isolated
from .systems import SHAPE_ENV, SHAPES, unavailable_reason
from .workloads import WORKLOADS, Workload, startup

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = ", ".join(w.name for w in WORKLOADS)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Measure trioflow, and the systems given to --compare, on the same "
                    "workloads and cluster shape (2 worker processes x 1 thread).",
        epilog=f"workloads: {names}. Results: benchmarks/results/latest.json (full runs) or "
               "partial.json (--quick/--only); docs/benchmarks.md is regenerated after full runs.")
    parser.add_argument("--compare", action="append", default=[], choices=["dask", "ray"],
                        help="also run this system (repeatable); skipped if it does not import")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes, fewer repeats; no map_100k; dask only up to fib(15)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these workloads (shell-style patterns: 'fib_*')")
    parser.add_argument("--repeats", type=int, help="runs per system per workload "
                        "(default 5, --quick 3; slow workloads are capped lower)")
    parser.add_argument("--output", type=Path, help="where to write (or, with --render-docs, "
                        "read) the results JSON")
    parser.add_argument("--docs", action=argparse.BooleanOptionalAction, default=None,
                        help="regenerate docs/benchmarks.md (default: only after full runs)")
    parser.add_argument("--merge", action="store_true",
                        help="re-measure the --only workloads on the systems run now and "
                        "replace those rows in results/latest.json (the page says which rows "
                        "were re-measured when)")
    parser.add_argument("--cluster", choices=SHAPES, default="cli",
                        help="cli (default): scheduler and workers are separate processes "
                        "started from each system's CLI, the client connects by address; "
                        "in-process: the scheduler runs in the benchmark process "
                        "(Client(workers=2) / LocalCluster)")
    parser.add_argument("--render-docs", action="store_true",
                        help="only regenerate docs/benchmarks.md from results/latest.json "
                        "(or from --output)")
    return parser.parse_args(argv)


def select(only: list[str] | None, quick: bool) -> list[Workload]:
    chosen = [w for w in WORKLOADS if not only or any(fnmatch.fnmatch(w.name, p) for p in only)]
    if only and not chosen:
        raise SystemExit(f"no workload matches {only}; choose from {[w.name for w in WORKLOADS]}")
    return [w for w in chosen if not quick or w.in_quick]


def run_once(wl: Workload, system: str, quick: bool) -> tuple[Outcome, dict[str, Any]]:
    """One run of one workload on one system; the outcome and its record for the JSON."""
    params = wl.quick if quick and wl.quick is not None else wl.params
    if wl.target == "script":
        outcome = run_isolated(startup.command(system), wl.timeout)
    else:
        outcome = run_isolated([sys.executable, "-m", "benchmarks.child", system, wl.name,
                                json.dumps(params)], wl.timeout)
    record: dict[str, Any] = {"workload": wl.name, "system": system, "status": outcome.status,
                              "params": params, "wall_s": round(outcome.wall_s, 3),
                              "teardown_s": outcome.teardown_s, "strays": outcome.strays,
                              "foreign_load": outcome.foreign_load}
    result = outcome.result or {}
    if outcome.status == "ok":
        try:
            record["rows"] = (startup.rows(result, outcome.spawned_at, outcome.teardown_s)
                              if wl.target == "script" else result["rows"])
        except Exception as exc:
            outcome.status = record["status"] = "error"
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["resources"] = result.get("resources")
        record["cluster_start_s"] = result.get("cluster_start_s")
    elif outcome.status == "timeout":
        record["error"] = f"no result after {wl.timeout:.0f} s, killed"
        record["timeout_s"] = wl.timeout
        if outcome.at_kill and wl.target != "script":
            record["resources"] = {**outcome.at_kill, "at_kill": True}
    else:
        record["error"] = result.get("error") or "exited without a result"
        record["stderr_tail"] = outcome.stderr_tail or result.get("traceback", "")
    return outcome, record


def describe(record: dict[str, Any]) -> str:
    parts = []
    if record["status"] != "ok":
        parts.append(f"{record['status'].upper()}: {record.get('error', '')}")
    for name, row in record.get("rows", {}).items():
        value = report.display(row["seconds"], row["unit"], row["work"])
        parts.append(f"{name} {report.fmt(value)} {row['unit']}")
    res = record.get("resources") or {}
    if res.get("peak_threads") is not None and res.get("at_kill"):
        parts.append(f"{res['peak_threads']} threads in a worker when killed")
    elif res.get("peak_threads") is not None:
        parts.append(f"threads/worker {res['baseline_threads']}->{res['peak_threads']}")
    if (record.get("foreign_load") or 0) >= 0.2:
        parts.append(f"other programs used {record['foreign_load']:.1f} cores meanwhile")
    if record["strays"]:
        parts.append(f"killed {len(record['strays'])} stray process(es)")
    return ", ".join(parts)


def run_all(workloads: list[Workload], systems: list[str], quick: bool,
            repeats: int) -> list[dict[str, Any]]:
    """Every run of every workload, interleaved across systems; the JSON records."""
    runs: list[dict[str, Any]] = []
    for wl in workloads:
        here = [s for s in systems if wl.runs_on(s, quick)]
        given_up: set[str] = set()
        for i in range(min(repeats, wl.max_repeats or repeats)):
            for system in here:
                if system in given_up:
                    continue
                outcome, record = run_once(wl, system, quick)
                record["repeat"] = i + 1
                runs.append(record)
                print(f"{wl.name:<13} {system:<9} #{i + 1}  {describe(record)}", flush=True)
                if outcome.status != "ok":
                    given_up.add(system)  # a hang or failure would only repeat
                    if record.get("stderr_tail"):
                        print("    " + record["stderr_tail"][-2000:].replace("\n", "\n    "))
    return runs


def merge(previous: dict[str, Any], runs: list[dict[str, Any]],
          meta: dict[str, Any]) -> dict[str, Any]:
    """``previous`` results with the (workload, system) pairs measured now replaced by
    ``runs`` (so re-measuring trioflow alone keeps the other systems' rows)."""
    redone = list(dict.fromkeys(r["workload"] for r in runs))
    pairs = {(r["workload"], r["system"]) for r in runs}
    all_runs = [r for r in previous["runs"] if (r["workload"], r["system"]) not in pairs] + runs
    order = [w.name for w in WORKLOADS if any(r["workload"] == w.name for r in all_runs)]
    old = dict(previous["meta"])
    old["systems"] = list(dict.fromkeys(old["systems"] + meta["systems"]))
    earlier = [m for m in old.get("merged", []) if not set(m["workloads"]) <= set(redone)]
    old["merged"] = [*earlier, {
        "workloads": redone, "date": meta["date"], "command": meta["command"],
        "cluster": meta["cluster"],
        "commit": meta["machine"]["commit"], "foreign_load": meta["foreign_load"]}]
    return {"meta": old, "summary": report.summarize(all_runs, order), "runs": all_runs}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_docs:
        source = args.output or RESULTS / "latest.json"
        results = json.loads(source.read_text(encoding="utf-8"))
        print(f"wrote {report.write_doc(results)}")
        return 0
    if args.merge and (args.quick or not args.only):
        raise SystemExit("--merge re-measures some workloads of a full run: use it with "
                         "--only and without --quick")
    skipped: list[str] = []
    systems = ["trioflow"]
    for name in dict.fromkeys(args.compare):
        reason = unavailable_reason(name)
        if reason:
            skipped.append(f"{name}: {reason}")
            print(f"skipping {name}: {reason}")
        else:
            systems.append(name)
    workloads = select(args.only, args.quick)
    for wl in workloads:
        skipped += [f"{wl.name} on {s}" + (" (--quick)" if wl.runs_on(s, False) else "")
                    for s in systems if not wl.runs_on(s, args.quick)]
    repeats = args.repeats or (3 if args.quick else 5)
    os.environ[SHAPE_ENV] = args.cluster  # the runs' subprocesses read it
    full = not args.quick and not args.only
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.monotonic()
    bytecode = compile_bytecode()  # as installed: see its docstring
    runs = run_all(workloads, systems, args.quick, repeats)
    loads = [r["foreign_load"] for r in runs if r["foreign_load"] is not None]
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "elapsed_min": (time.monotonic() - t0) / 60, "quick": args.quick, "repeats": repeats,
        "repeat_caps": {w.name: w.max_repeats for w in workloads if w.max_repeats},
        "bytecode": bytecode, "systems": systems, "cluster": args.cluster, "skipped": skipped, "machine": report.describe_machine(),
        "foreign_load": [min(loads, default=None), max(loads, default=None),
                         sum(loads) / len(loads) if loads else None],
    }
    out = args.output or RESULTS / ("latest.json" if full or args.merge else "partial.json")
    if args.merge:
        results = merge(json.loads(out.read_text(encoding="utf-8")), runs, meta)
    else:
        results = {"meta": meta, "summary": report.summarize(runs, [w.name for w in workloads]),
                   "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    doc = report.write_doc(results) if args.docs or (args.docs is None and
                                                     (full or args.merge)) else None
    print()
    print(report.tables(results))
    print(f"results: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    if doc is not None:
        print(f"docs: regenerated {doc.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
