"""Task programs as data: what a task does when it runs, without any Python function.

A :class:`Program` is one task. When it runs it submits its ``children`` (fan-out), waits
on them in the way its ``wait`` style says, then returns ``1 + sum(children's values)``
(so a program's value is the size of its tree) or, when ``fail`` is set, raises
:class:`ProgramFailure`. A child that fails makes its parent's wait raise the child's
error (the first failed child in submission order, like ``client.gather``).

The same data drives three things, which is why it lives in one small module:

* the deterministic simulator (:mod:`.simulate`), which carries a program in a task's
  ``payload`` bytes (:func:`encode_payload`);
* the real cluster (:mod:`.live`), which runs it with generic interpreter functions;
* the renderer (:mod:`.render`), which prints it as a standalone trioflow script.

``repr(program)`` is valid Python (``from trioflow.testing import Program, Wait``), so a
program Hypothesis prints can be pasted into a test.
"""

from __future__ import annotations

import enum
import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any

import attrs


class Wait(enum.Enum):
    """How a task waits on the children it submitted."""

    #: ``client.gather(futures)`` without seceding: the task keeps its slot while waiting.
    NONE = "none"
    #: ``secede(); client.gather(futures); rejoin()``: the slot is given back meanwhile.
    SECEDE = "secede"
    #: ``with worker_client() as client: submit...; gather``: secede on enter, rejoin on exit.
    WORKER_CLIENT = "worker_client"
    #: an ``async def`` task that ``await``\\ s the gather: no slot is held while waiting.
    ASYNC = "async"

    def __repr__(self) -> str:
        return f"Wait.{self.name}"

    @property
    def releases_slot(self) -> bool:
        """Whether a task waiting this way gives its slot back while it waits."""
        return self is not Wait.NONE


#: what a program task may use: nothing, the lock, or one end of the queue
USES: tuple[str, ...] = ("", "lock", "put", "get", "gpu")

#: every wait style, simplest first (Hypothesis shrinks towards the front)
ALL_WAITS: tuple[Wait, ...] = tuple(Wait)
#: the styles that give the slot back while waiting
RELEASING_WAITS: tuple[Wait, ...] = (Wait.SECEDE, Wait.WORKER_CLIENT, Wait.ASYNC)


@attrs.frozen(kw_only=True, repr=False)
class Program:
    """One task of a program tree.

    Attributes:
        wait: how this task waits on its children. For a leaf only "sync or async"
            matters: leaves are normalised to ``Wait.NONE`` (a plain function) or
            ``Wait.ASYNC`` (an ``async def``).
        children: the tasks it submits, in submission order.
        fail: raise :class:`ProgramFailure` after the wait instead of returning.
        uses: a coordination primitive the task uses, before it submits anything:
            ``"lock"`` holds ``Lock("L")`` for its whole body (released when it ends, also
            on an error, like ``with``); ``"put"`` puts one item into ``Queue("Q")``;
            ``"get"`` takes one (blocking, holding its slot); ``"gpu"`` is submitted with
            ``resources={"GPU": 1}`` (workers offer ``SimConfig.gpus``). ``""``: none.
    """

    wait: Wait = Wait.NONE
    children: tuple[Program, ...] = ()
    fail: bool = False
    uses: str = ""

    def __attrs_post_init__(self) -> None:
        if not self.children and self.wait not in (Wait.NONE, Wait.ASYNC):
            object.__setattr__(self, "wait", Wait.NONE)
        if self.uses not in USES:
            raise ValueError(f"uses must be one of {USES}, got {self.uses!r}")

    def __repr__(self) -> str:
        args = []
        if self.wait is not Wait.NONE:
            args.append(f"wait={self.wait!r}")
        if self.children:
            inner = ", ".join(repr(c) for c in self.children)
            args.append(f"children=({inner},)" if len(self.children) == 1 else f"children=({inner})")
        if self.fail:
            args.append("fail=True")
        if self.uses:
            args.append(f"uses={self.uses!r}")
        return f"Program({', '.join(args)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis (and IPython) print a program as its compact repr."""
        printer.text(repr(self))

    @property
    def is_async(self) -> bool:
        """Whether this task is an ``async def`` task."""
        return self.wait is Wait.ASYNC

    def size(self) -> int:
        """Number of tasks in this tree (also its value when nothing fails)."""
        return 1 + sum(c.size() for c in self.children)

    def depth(self) -> int:
        """Height of the tree in edges: a leaf has depth 0."""
        return 1 + max(c.depth() for c in self.children) if self.children else 0

    def nodes(self, path: str = "0") -> Iterator[tuple[str, Program]]:
        """Every task of the tree with its path (``"0"``, ``"0.1"``, ...), parents first."""
        yield path, self
        for i, child in enumerate(self.children):
            yield from child.nodes(f"{path}.{i}")

    def waits(self) -> set[Wait]:
        """The wait styles of the tasks that wait (those with children)."""
        return {n.wait for _, n in self.nodes() if n.children}

    def holds_slots_while_waiting(self) -> bool:
        """Whether some task waits on children without giving its slot back, or waits on
        a primitive (which holds the slot too)."""
        return Wait.NONE in self.waits() or self.uses_primitives()

    def uses_primitives(self) -> bool:
        """Whether some task uses the lock or the queue (a GPU is a resource, and a
        task that gives its slot back gives its GPU back too: not counted here)."""
        return any(n.uses in ("lock", "put", "get") for _, n in self.nodes())

    def well_fed(self) -> bool:
        """Whether every ``get`` can be fed: no more gets than puts, and no put below a
        get in the tree (a get blocks before its task submits anything). A program that
        is not can starve with slots free, which no scheduler can tell from a consumer
        whose producer a client will submit later: not a deadlock the rule reports."""
        nodes = list(self.nodes())
        gets = [path for path, n in nodes if n.uses == "get"]
        puts = [path for path, n in nodes if n.uses == "put"]
        return len(gets) <= len(puts) and not any(
            put.startswith(get + ".") for get in gets for put in puts)


@attrs.frozen(kw_only=True)
class ClusterShape:
    """How many workers, and how many slots (threads) each has."""

    workers: int = 1
    slots: int = 1

    @property
    def total_slots(self) -> int:
        return self.workers * self.slots


class ProgramFailure(Exception):
    """The exception a program task with ``fail=True`` raises (``path`` names the task)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path

    def __str__(self) -> str:
        return f"program task {self.path} failed on purpose"


# ----------------------------------------------------------------------------- outcomes


@attrs.frozen(kw_only=True)
class Outcome:
    """What a task ended with: a value, or an error type name and text."""

    value: int | None = None
    error: str = ""
    text: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def deadlocked(self) -> bool:
        return self.error.endswith("DeadlockError")

    def summary(self) -> tuple[object, ...]:
        """What the simulator and a real cluster must agree on: the value, or the error
        type (and, for a :class:`ProgramFailure`, which task failed). A deadlock's text
        differs (the simulator records the waiting task, a real cluster the report)."""
        if self.ok:
            return ("value", self.value)
        if self.deadlocked:
            return ("deadlock",)
        if self.error == FAILURE_TYPE:
            return ("failure", self.text)
        return ("error", self.error)


FAILURE_TYPE = f"{ProgramFailure.__module__}.{ProgramFailure.__qualname__}"
DEADLOCK_TYPE = "trioflow.errors.DeadlockError"


def expected_outcome(program: Program, path: str = "0",
                     deadlocked: frozenset[str] = frozenset()) -> Outcome:
    """The outcome the program semantics predict, given which tasks (by path) had their
    wait fail with ``DeadlockError``.

    Children are gathered in order, so the first failed child's error is the parent's.
    """
    values = []
    first_error: Outcome | None = None
    for i, child in enumerate(program.children):
        out = expected_outcome(child, f"{path}.{i}", deadlocked)
        if out.ok:
            values.append(out.value or 0)
        elif first_error is None:
            first_error = out
    if path in deadlocked:
        return Outcome(error=DEADLOCK_TYPE, text=path)
    if first_error is not None:
        return first_error
    if program.fail:
        return Outcome(error=FAILURE_TYPE, text=path)
    return Outcome(value=1 + sum(values))


# ----------------------------------------------------------------------------- payload


def _to_json(program: Program) -> list[object]:
    out: list[object] = [program.wait.value, int(program.fail),
                         [_to_json(c) for c in program.children]]
    if program.uses:
        out.append(program.uses)
    return out


def _from_json(data: object) -> Program:
    if not (isinstance(data, list) and len(data) in (3, 4) and isinstance(data[2], list)):
        raise ValueError(f"not an encoded program: {data!r}")
    wait, fail, children, *uses = data
    return Program(wait=Wait(wait), fail=bool(fail), children=tuple(_from_json(c) for c in children),
                   uses=str(uses[0]) if uses else "")


def encode_payload(program: Program, path: str) -> bytes:
    """The bytes a simulated task carries as its payload: its path and its program."""
    return json.dumps([path, _to_json(program)], separators=(",", ":")).encode()


def decode_payload(payload: bytes) -> tuple[str, Program]:
    """Inverse of :func:`encode_payload`."""
    path, tree = json.loads(payload)
    return path, _from_json(tree)


# ----------------------------------------------------------------------------- enumeration


def enumerate_programs(max_depth: int, max_fanout: int, waits: Sequence[Wait] = ALL_WAITS,
                       *, async_leaves: bool = False) -> Iterator[Program]:
    """Every program up to ``max_depth`` and ``max_fanout``, each shape once.

    Children are treated as a multiset (the tree ``(a, b)`` is the tree ``(b, a)``), so
    the count stays small enough to check every program. No task fails.

    Args:
        waits: the wait styles tried on every task that has children.
        async_leaves: also try ``async def`` leaves (doubles the leaf variants).
    """
    leaves = [Program()] + ([Program(wait=Wait.ASYNC)] if async_leaves else [])
    yield from _programs(max_depth, max_fanout, tuple(waits), tuple(leaves))


def _programs(depth: int, fanout: int, waits: tuple[Wait, ...],
              leaves: tuple[Program, ...]) -> Iterator[Program]:
    yield from leaves
    if depth == 0:
        return
    below = list(_programs(depth - 1, fanout, waits, leaves))
    for n in range(1, fanout + 1):
        for kids in itertools.combinations_with_replacement(below, n):
            for wait in waits:
                yield Program(wait=wait, children=kids)


def enumerate_primitive_programs(max_depth: int, max_fanout: int, primitive: str,
                                 waits: Sequence[Wait] = ALL_WAITS) -> Iterator[Program]:
    """Every program of :func:`enumerate_programs` with the lock (``primitive="lock"``:
    each way of giving it to one or more tasks) or the queue (``"queue"``: every
    well-fed way of putting and getting), each distinct program once.

    Every task of the base program gets each of the uses the primitive allows, so the
    count grows fast: depth 2, fan-out 2 is the bound the sweep runs.
    """
    allowed = {"lock": ("", "lock"), "queue": ("", "put", "get"), "gpu": ("", "gpu")}[primitive]
    seen: set[str] = set()
    for base in enumerate_programs(max_depth, max_fanout, waits):
        for program in _with_uses(base, allowed):
            if not any(n.uses for _, n in program.nodes()):
                continue
            if primitive == "queue" and not program.well_fed():
                continue
            text = repr(program)
            if text not in seen:
                seen.add(text)
                yield program


def _with_uses(program: Program, allowed: tuple[str, ...]) -> Iterator[Program]:
    for uses in allowed:
        kids_options = [list(_with_uses(c, allowed)) for c in program.children]
        for kids in itertools.product(*kids_options):
            yield Program(wait=program.wait, children=tuple(kids), fail=program.fail,
                          uses=uses)


def count_programs(max_depth: int, max_fanout: int, waits: Sequence[Wait] = ALL_WAITS,
                   *, async_leaves: bool = False) -> int:
    """How many programs :func:`enumerate_programs` yields (without building them)."""
    from math import comb

    leaves = 2 if async_leaves else 1
    count = leaves
    for _ in range(max_depth):
        count = leaves + len(waits) * sum(comb(count + n - 1, n) for n in range(1, max_fanout + 1))
    return count
