"""Exhaustive mode: every program up to a depth and fan-out, on every small cluster.

:func:`sweep` runs :func:`~.scheduling.simulate_program` (which checks every property:
ends, no false or missed deadlock reports, outcome as the semantics predict, releasing
programs never deadlock) for each program of :func:`~.program.enumerate_programs` on
each cluster shape, under each named schedule, and counts what happened. It never
stops at the first violation: it collects them (up to a limit) so one run shows how
widespread a bug is.

Schedules are named, not passed as functions, so a sweep can be spread over processes:
``"canonical"``, ``"lazy"``, ``"random:<seed>"``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor

import attrs

from .program import ALL_WAITS, ClusterShape, Program, Wait, enumerate_programs
from .scheduling import (
    CANONICAL,
    Chooser,
    Starved,
    lazy_threads,
    random_chooser,
    simulate_program,
)
from .simulate import SimConfig
from .truth import GroundTruthUnknown

__all__ = ["DEFAULT_SHAPES", "SweepReport", "chooser_named", "sweep", "sweep_programs"]

#: 1-2 workers with 1-3 slots each
DEFAULT_SHAPES: tuple[ClusterShape, ...] = tuple(
    ClusterShape(workers=w, slots=s) for w in (1, 2) for s in (1, 2, 3))


def chooser_named(name: str) -> Chooser:
    """The chooser called ``name``: canonical, lazy, or random:<seed>."""
    if name == "canonical":
        return CANONICAL
    if name == "lazy":
        return lazy_threads()
    if name.startswith("random:"):
        return random_chooser(int(name.split(":", 1)[1]))
    raise ValueError(f"unknown schedule {name!r}: use canonical, lazy or random:<seed>")


@attrs.define
class SweepReport:
    """Counts from a sweep.

    Attributes:
        runs: (program, shape, schedule) simulations.
        deadlocked: runs in which the detector reported a (confirmed) deadlock.
        reports: deadlock reports issued, each confirmed by ground truth.
        releasing: runs of programs whose every wait gives its slot back (must finish).
        violations: descriptions of property violations (and of deadlock reports ground
            truth could not decide within its budget), up to ``max_violations``.
        violation_count: how many there were in all.
    """

    programs: int = 0
    runs: int = 0
    finished: int = 0
    deadlocked: int = 0
    reports: int = 0
    releasing: int = 0
    violations: list[str] = attrs.Factory(list)
    violation_count: int = 0
    seconds: float = 0.0
    #: runs stuck only behind a Queue get nobody feeds, with a slot free (a later task
    #: could still put: not reported, and not a violation; see ``Simulator.starved``)
    starved: int = 0

    def add(self, other: SweepReport, max_violations: int) -> None:
        for name in ("programs", "runs", "finished", "deadlocked", "reports", "releasing",
                     "violation_count", "seconds", "starved"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.violations += other.violations[: max(0, max_violations - len(self.violations))]

    def summary(self) -> str:
        return (f"{self.programs} programs, {self.runs} runs: {self.finished} finished, "
                f"{self.deadlocked} deadlocked ({self.reports} reports, all confirmed by "
                f"ground truth), {self.releasing} runs of slot-releasing programs"
                f"{f', {self.starved} starved on an unfed queue' if self.starved else ''}; "
                f"{self.violation_count} violations; {self.seconds:.1f}s of simulation")


def sweep_programs(programs: Iterable[Program], shapes: Sequence[ClusterShape] = DEFAULT_SHAPES,
                   schedules: Sequence[str] = ("canonical",), *,
                   config: SimConfig | None = None, max_violations: int = 20) -> SweepReport:
    """Simulate each program on each shape under each schedule; count and collect."""
    report = SweepReport()
    start = time.perf_counter()
    for program in programs:
        report.programs += 1
        releasing = not program.holds_slots_while_waiting()
        for shape in shapes:
            for name in schedules:
                report.runs += 1
                report.releasing += releasing
                try:
                    run = simulate_program(program, shape, chooser_named(name), config=config,
                                           invariants=False)
                except Starved:
                    report.starved += 1
                    continue
                except (AssertionError, GroundTruthUnknown) as exc:
                    report.violation_count += 1
                    if len(report.violations) < max_violations:
                        report.violations.append(f"{program!r} on {shape!r} ({name}): "
                                                 f"{str(exc)[:2000]}")
                    continue
                report.finished += not run.deadlocked
                report.deadlocked += run.deadlocked
                report.reports += len(run.detections)
    report.seconds = time.perf_counter() - start
    return report


def _sweep_chunk(args: tuple[list[Program], Sequence[ClusterShape], Sequence[str],
                             SimConfig | None, int]) -> SweepReport:
    programs, shapes, schedules, config, max_violations = args
    return sweep_programs(programs, shapes, schedules, config=config,
                          max_violations=max_violations)


def sweep(max_depth: int, max_fanout: int, *, waits: Sequence[Wait] = ALL_WAITS,
          async_leaves: bool = False, shapes: Sequence[ClusterShape] = DEFAULT_SHAPES,
          schedules: Sequence[str] = ("canonical",), stride: int = 1, jobs: int = 1,
          config: SimConfig | None = None, max_violations: int = 20) -> SweepReport:
    """Check every program up to ``max_depth``/``max_fanout`` (every ``stride``-th one).

    Args:
        stride: keep every ``stride``-th program of the enumeration (a deterministic
            subset for CI).
        jobs: processes to spread the work over.
    """
    programs = list(enumerate_programs(max_depth, max_fanout, waits,
                                       async_leaves=async_leaves))[::stride]
    if jobs <= 1:
        return sweep_programs(programs, shapes, schedules, config=config,
                              max_violations=max_violations)
    chunk = max(1, len(programs) // (jobs * 8))
    parts = [(programs[i:i + chunk], shapes, schedules, config, max_violations)
             for i in range(0, len(programs), chunk)]
    total = SweepReport()
    with ProcessPoolExecutor(jobs) as pool:
        for part in pool.map(_sweep_chunk, parts):
            total.add(part, max_violations)
    return total
