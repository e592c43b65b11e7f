"""Exhaustive mode on a budget: the enumeration is what it claims, and a CI-sized subset
of programs keeps every property (fuzz/test_exhaustive.py checks them all)."""

from __future__ import annotations

from trioflow.testing import (
    ALL_WAITS,
    ClusterShape,
    Program,
    SimConfig,
    Wait,
    count_programs,
    enumerate_programs,
    schedule_independent,
)
from trioflow.testing.exhaustive import DEFAULT_SHAPES, sweep, sweep_programs


def test_enumeration_counts_and_is_duplicate_free():
    for depth in range(3):
        for waits in ((Wait.NONE,), (Wait.NONE, Wait.SECEDE), ALL_WAITS):
            for async_leaves in (False, True):
                found = list(enumerate_programs(depth, 2, waits, async_leaves=async_leaves))
                assert len(found) == len(set(found))
                assert len(found) == count_programs(depth, 2, waits, async_leaves=async_leaves)
                assert all(p.depth() <= depth for p in found)
    assert count_programs(3, 2) == 95_481


def test_every_program_up_to_depth_one_on_every_shape_and_schedule():
    report = sweep(1, 2, async_leaves=True, schedules=("canonical", "lazy", "random:0"))
    assert report.violation_count == 0, report.violations
    assert report.programs == count_programs(1, 2, async_leaves=True)
    assert report.runs == report.programs * len(DEFAULT_SHAPES) * 3
    assert report.deadlocked > 0 and report.finished > 0


def test_a_ci_subset_of_depth_two_and_three():
    depth_two = sweep(2, 2, stride=5)
    depth_three = sweep(3, 2, waits=(Wait.NONE, Wait.SECEDE), stride=60)
    for report in (depth_two, depth_three):
        assert report.violation_count == 0, report.violations


def test_a_ci_subset_of_depth_two_under_the_other_placements():
    # children placed with a one-run window (the SubmitTask fallback too), and all
    # through the scheduler (as before local placement)
    for placement in ("window1", "scheduler"):
        report = sweep(2, 2, stride=5, config=SimConfig(placement=placement))
        assert report.violation_count == 0, report.violations


def test_schedule_independence_rule():
    slot_holding = Program(wait=Wait.NONE, children=(Program(),))
    assert schedule_independent(slot_holding, ClusterShape(workers=1, slots=1))
    assert not schedule_independent(slot_holding, ClusterShape(workers=1, slots=2))
    releasing = Program(wait=Wait.SECEDE, children=(Program(),))
    assert schedule_independent(releasing, ClusterShape(workers=2, slots=3))


def test_sweep_collects_problems_instead_of_stopping():
    # with no search budget, ground truth cannot confirm any report: each such run is
    # collected (and counted), and the sweep goes on to the next one
    programs = [Program(wait=Wait.NONE, children=(Program(),)), Program()]
    report = sweep_programs(programs, [ClusterShape()], config=SimConfig(truth_budget=0))
    assert report.runs == 2 and report.violation_count == 1
    assert "ground truth undecided" in report.violations[0]
    assert report.finished == 1
