"""``python -m trioflow.testing``: reproduce and shrink deadlocks, or sweep every program.

Commands:

``deadlocks``
    Let Hypothesis look for a secede-less program that deadlocks in the simulator, shrink
    it to the smallest one, and print it (as data and as a runnable script) with the
    detector's report and ground truth's verdict. Needs Hypothesis.
``exhaustive``
    Check every program up to a depth and fan-out on 1-2 workers with 1-3 slots, and
    print the counts (exit status 1 if any property broke).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .program import ALL_WAITS, ClusterShape, Program, Wait
from .render import render_program
from .scheduling import simulate_program


def find_minimal_deadlock(max_depth: int = 3, max_fanout: int = 2, *, seed: int = 0,
                          max_examples: int = 2_000) -> tuple[Program, ClusterShape, Program]:
    """Search secede-less programs for one that deadlocks (canonical schedule) and shrink it.

    Hypothesis tries the simplest program first and shrinks whatever fails; the largest
    deadlocking program it met on the way shows what shrinking buys.

    Returns:
        ``(minimal program, its cluster shape, the largest deadlocking program seen)``.
    """
    import random

    from hypothesis import find, settings
    from hypothesis import strategies as st

    from .strategies import cluster_shapes, secede_less_programs

    largest: list[Program] = []

    def deadlocks(case: tuple[Program, ClusterShape]) -> bool:
        program, shape = case
        found = simulate_program(program, shape).deadlocked
        if found and (not largest or program.size() > largest[0].size()):
            largest[:] = [program]
        return found

    strategy = st.tuples(secede_less_programs(max_depth=max_depth, max_fanout=max_fanout),
                         cluster_shapes())
    program, shape = find(strategy, deadlocks,
                          settings=settings(max_examples=max_examples, database=None,
                                            deadline=None),
                          random=random.Random(seed))
    return program, shape, largest[0]


def _deadlocks(args: argparse.Namespace) -> int:
    program, shape, largest = find_minimal_deadlock(args.max_depth, args.max_fanout,
                                                  seed=args.seed)
    run = simulate_program(program, shape)
    detection = run.detections[0]
    print(f"Largest deadlocking program met during the search:\n  {largest!r}\n")
    print(f"Shrunk to:\n  {program!r}\n  on {shape!r}\n")
    print("The scheduler's report (the waiting task gets DeadlockError):\n")
    print("  " + detection.report.replace("\n", "\n  ") + "\n")
    print(f"Ground truth: no schedule lets any task end (searched {detection.visited} "
          "world(s) with the detector switched off).\n")
    print("As a trioflow script:\n")
    print(render_program(program, shape, prediction="DeadlockError",
                         title="The smallest secede-less deadlock, found by trioflow.testing."))
    return 0


def _exhaustive(args: argparse.Namespace) -> int:
    from .exhaustive import sweep
    from .simulate import SimConfig

    waits = tuple(Wait(w) for w in args.waits.split(",")) if args.waits else ALL_WAITS
    report = sweep(args.depth, args.fanout, waits=waits, async_leaves=args.async_leaves,
                   schedules=args.schedules.split(","), stride=args.stride, jobs=args.jobs,
                   config=SimConfig(placement=args.placement))
    print(report.summary())
    for violation in report.violations:
        print("\nVIOLATION:", violation)
    return 1 if report.violation_count else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trioflow.testing",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("deadlocks", help="find, shrink and print a secede-less deadlock")
    dl.add_argument("--max-depth", type=int, default=3)
    dl.add_argument("--max-fanout", type=int, default=2)
    dl.add_argument("--seed", type=int, default=0, help="seed of the random search")
    dl.set_defaults(func=_deadlocks)
    ex = sub.add_parser("exhaustive", help="check every program up to a size")
    ex.add_argument("--depth", type=int, default=2)
    ex.add_argument("--fanout", type=int, default=2)
    ex.add_argument("--waits", default="", help="comma-separated: none,secede,worker_client,async")
    ex.add_argument("--async-leaves", action="store_true", help="also try async def leaves")
    ex.add_argument("--schedules", default="canonical",
                    help="comma-separated: canonical, lazy, random:<seed>")
    ex.add_argument("--stride", type=int, default=1, help="check every n-th program only")
    ex.add_argument("--placement", default="local", choices=("local", "window1", "scheduler"),
                    help="where children of running tasks go (SimConfig.placement)")
    ex.add_argument("--jobs", type=int, default=1, help="processes")
    ex.set_defaults(func=_exhaustive)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
