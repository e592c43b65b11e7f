"""Exhaustive mode: every program up to depth 3 and fan-out 2, on 1-2 workers with 1-3
slots each, checked for every property (see trioflow.testing.exhaustive).

Profile "ci" checks all 217 depth-2 programs and a deterministic subset of depth 3
(every 6th slot-holding/releasing program, every 400th of all); profile "fuzz" checks
all of them:
95,481 programs (all four wait styles, children as multisets) x 6 cluster shapes, plus
depth 2 with async leaves under three schedules each. Depth 2 is checked under every
placement of children (``SimConfig.placement``: on the parent's worker, on it with a
one-run window so the fallback is taken too, and through the scheduler); depth 3 under
the product's (local placement).
"""

from __future__ import annotations

import os

import pytest

from trioflow.testing import SimConfig, Wait, count_programs
from trioflow.testing.exhaustive import sweep
from trioflow.testing.profiles import active_profile
from trioflow.testing.simulate import PLACEMENTS

FULL = active_profile() == "fuzz"
JOBS = (os.cpu_count() or 1) if FULL else 1


def _check(report):
    print(report.summary())
    assert report.violation_count == 0, "\n\n".join(report.violations)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_depth_two_every_wait_style_and_schedule(placement):
    report = sweep(2, 2, async_leaves=FULL, stride=1,
                   schedules=("canonical", "lazy", "random:1") if FULL else ("canonical",),
                   jobs=JOBS, config=SimConfig(placement=placement))
    _check(report)


def test_depth_three_slot_holding_versus_releasing():
    report = sweep(3, 2, waits=(Wait.NONE, Wait.SECEDE), stride=1 if FULL else 6, jobs=JOBS)
    _check(report)


def test_depth_three_every_program():
    stride = 1 if FULL else 400
    report = sweep(3, 2, stride=stride, jobs=JOBS)
    assert report.programs == len(range(0, count_programs(3, 2), stride))
    _check(report)
