"""Hypothesis strategies for task programs, cluster shapes and schedules.

Importing this module imports Hypothesis (a test extra, not a dependency of trioflow).

Every strategy shrinks towards the simplest thing of its kind: programs towards a single
plain task (then towards ``Wait.NONE``, the first wait style, and fewer, shallower
children), shapes towards one worker with one slot, schedules towards the canonical
order. That is what makes a failing secede-less program shrink to the textbook deadlock:
one slot, one task waiting on one child.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from .program import ALL_WAITS, RELEASING_WAITS, ClusterShape, Program, Wait
from .scheduling import Schedule

__all__ = [
    "cluster_shapes",
    "primitive_programs",
    "programs",
    "releasing_programs",
    "schedules",
    "secede_less_programs",
]


def programs(*, max_depth: int = 3, max_fanout: int = 2,
             waits: Sequence[Wait] = ALL_WAITS, failures: bool = True,
             async_leaves: bool = True) -> st.SearchStrategy[Program]:
    """Recursive submission programs.

    Args:
        max_depth: the deepest chain of submissions (a leaf has depth 0).
        max_fanout: the most children one task submits.
        waits: the wait styles a task with children may use.
        failures: whether tasks may fail (``fail=True``) after their wait.
        async_leaves: whether leaves may be ``async def`` tasks.
    """
    if max_depth < 0 or max_fanout < 1:
        raise ValueError(f"need max_depth >= 0 and max_fanout >= 1, got {max_depth}, "
                         f"{max_fanout}")
    if not waits:
        raise ValueError("waits must name at least one wait style")
    fail = st.booleans() if failures else st.just(False)
    leaf_waits = (Wait.NONE, Wait.ASYNC) if async_leaves else (Wait.NONE,)
    leaf = st.builds(Program, wait=st.sampled_from(leaf_waits), fail=fail)
    return _nodes(max_depth, max_fanout, tuple(waits), leaf, fail)


def _nodes(depth: int, fanout: int, waits: tuple[Wait, ...], leaf: st.SearchStrategy[Program],
           fail: st.SearchStrategy[bool]) -> st.SearchStrategy[Program]:
    if depth == 0:
        return leaf
    children = st.lists(_nodes(depth - 1, fanout, waits, leaf, fail), min_size=1,
                        max_size=fanout).map(tuple)
    inner = st.builds(Program, wait=st.sampled_from(waits), children=children, fail=fail)
    return st.one_of(leaf, inner)


def primitive_programs(*, uses: Sequence[str] = ("", "lock", "put", "get"),
                       max_depth: int = 2, max_fanout: int = 2,
                       waits: Sequence[Wait] = ALL_WAITS) -> st.SearchStrategy[Program]:
    """Recursive programs whose tasks may use the lock or the queue, or need a GPU
    (``Program.uses``), every ``get`` fed (``Program.well_fed``). Shrinks towards no
    primitive at all."""
    use = st.sampled_from(tuple(uses))
    leaf = st.builds(Program, wait=st.sampled_from((Wait.NONE, Wait.ASYNC)), uses=use)

    def nodes(depth: int) -> st.SearchStrategy[Program]:
        if depth == 0:
            return leaf
        children = st.lists(nodes(depth - 1), min_size=1, max_size=max_fanout).map(tuple)
        return st.one_of(leaf, st.builds(Program, wait=st.sampled_from(tuple(waits)),
                                         children=children, uses=use))

    return nodes(max_depth).filter(lambda program: program.well_fed())


def secede_less_programs(*, max_depth: int = 3, max_fanout: int = 2,
                         failures: bool = False) -> st.SearchStrategy[Program]:
    """Programs whose every wait keeps the slot (``Wait.NONE``), with plain leaves."""
    return programs(max_depth=max_depth, max_fanout=max_fanout, waits=(Wait.NONE,),
                    failures=failures, async_leaves=False)


def releasing_programs(*, max_depth: int = 3, max_fanout: int = 2,
                       failures: bool = True) -> st.SearchStrategy[Program]:
    """Programs whose every wait gives the slot back (secede, worker_client or async)."""
    return programs(max_depth=max_depth, max_fanout=max_fanout, waits=RELEASING_WAITS,
                    failures=failures)


def cluster_shapes(*, max_workers: int = 3, max_slots: int = 3) -> st.SearchStrategy[ClusterShape]:
    """Clusters of 1..``max_workers`` workers with 1..``max_slots`` slots each."""
    return st.builds(ClusterShape, workers=st.integers(1, max_workers),
                     slots=st.integers(1, max_slots))


def schedules(*, max_choices: int = 400) -> st.SearchStrategy[Schedule]:
    """Interleavings: a script of choices among enabled actions, then canonical order."""
    return st.lists(st.integers(0, 15), max_size=max_choices).map(
        lambda xs: Schedule(tuple(xs)))
