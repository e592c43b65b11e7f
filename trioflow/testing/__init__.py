"""Deterministic testing for trioflow task programs: a cluster simulator over the pure
cores, ground truth for deadlocks, Hypothesis strategies and a state machine.

Hypothesis is a test extra, not a dependency of trioflow: the simulator, the program
model, the renderer and the real-cluster runner import without it; ``strategies``,
``machine``, ``profiles`` and ``wire`` (and the names they export, e.g. ``programs``,
``ClusterMachine`` or ``any_message``) import it when first used.

    from trioflow.testing import ClusterShape, Program, Wait, simulate_program

    run = simulate_program(Program(wait=Wait.NONE, children=(Program(),)),
                           ClusterShape(workers=1, slots=1))
    run.deadlocked          # True: one slot, a task waiting on one child without seceding
    run.detections[0].report

Command line: ``python -m trioflow.testing deadlocks`` (see ``__main__``).
"""

from __future__ import annotations

from typing import Any

from ..cluster import open_local_cluster
from ..lazy_exports import lazy_exports
from .program import (
    ALL_WAITS,
    RELEASING_WAITS,
    ClusterShape,
    Outcome,
    Program,
    ProgramFailure,
    Wait,
    count_programs,
    enumerate_programs,
    expected_outcome,
)
from .render import render_program
from .scheduling import (
    CANONICAL,
    ProgramRun,
    Schedule,
    lazy_threads,
    outcomes_under,
    random_chooser,
    reachable_outcomes,
    run_until_quiet,
    schedule_independent,
    simulate_program,
    standard_choosers,
)
from .simulate import (
    AddWorker,
    Deliver,
    Lapse,
    RemoveWorker,
    SimConfig,
    Simulator,
    Step,
    Submit,
)
from .truth import BlindScheduler, Detection, GroundTruthUnknown, HarnessViolation

#: names served lazily from modules that import Hypothesis
_LAZY = {
    "ClusterMachine": "machine",
    "allowed_outcome": "machine",
    "cluster_shapes": "strategies",
    "programs": "strategies",
    "releasing_programs": "strategies",
    "schedules": "strategies",
    "secede_less_programs": "strategies",
    "any_message": "wire",
    "frames": "wire",
    "garbage_frames": "wire",
    "message_strategy": "wire",
    "fuzz_settings": "profiles",
    "register_profiles": "profiles",
    "select_profile": "profiles",
}


__getattr__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "ALL_WAITS",
    "CANONICAL",
    "RELEASING_WAITS",
    "AddWorker",
    "BlindScheduler",
    "ClusterMachine",
    "ClusterShape",
    "Deliver",
    "Detection",
    "GroundTruthUnknown",
    "HarnessViolation",
    "Lapse",
    "Outcome",
    "Program",
    "ProgramFailure",
    "ProgramRun",
    "RemoveWorker",
    "Schedule",
    "SimConfig",
    "Simulator",
    "Step",
    "Submit",
    "Wait",
    "allowed_outcome",
    "any_message",
    "cluster_shapes",
    "count_programs",
    "enumerate_programs",
    "expected_outcome",
    "frames",
    "fuzz_settings",
    "garbage_frames",
    "lazy_threads",
    "message_strategy",
    "open_local_cluster",
    "outcomes_under",
    "programs",
    "random_chooser",
    "reachable_outcomes",
    "register_profiles",
    "releasing_programs",
    "render_program",
    "run_until_quiet",
    "schedule_independent",
    "schedules",
    "secede_less_programs",
    "select_profile",
    "simulate_program",
    "standard_choosers",
]
