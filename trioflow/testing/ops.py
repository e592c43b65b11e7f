"""The ops of a simulated run: what a task's code does, in order, for its program
(the table of wait styles is in :mod:`.runs`)."""

from __future__ import annotations

import enum

from .program import Program, Wait


class Op(enum.Enum):
    ACQUIRE = "acquire"  # Lock("L").acquire(), held until END
    PUT = "put"  # Queue("Q").put(1)
    GET = "get"  # Queue("Q").get(), blocking
    SUBMIT = "submit"
    SECEDE = "secede"
    WAIT = "wait"
    ASYNC_WAIT = "async-wait"
    REJOIN = "rejoin"
    END = "end"


#: the primitive op a program's ``uses`` starts with
_USE_OPS = {"lock": Op.ACQUIRE, "put": Op.PUT, "get": Op.GET}

#: the primitives of programs: (kind, name) by op
PRIMITIVE_OF = {Op.ACQUIRE: ("lock", "L"), Op.PUT: ("queue", "Q"), Op.GET: ("queue", "Q")}


def ops_for(program: Program) -> list[Op]:
    """The ops a run of ``program`` performs, in order (see the module docstring); a
    task using a primitive does that first (a held lock is released by END)."""
    ops = _base_ops(program)
    op = _USE_OPS.get(program.uses)  # ("gpu" is in the submission, not an op)
    return [op, *ops] if op is not None else ops


def _base_ops(program: Program) -> list[Op]:
    n = len(program.children)
    if n == 0:
        return [Op.END]
    wait = program.wait
    if wait is Wait.NONE:
        return [Op.SUBMIT] * n + [Op.WAIT, Op.END]
    if wait is Wait.SECEDE:
        return [Op.SUBMIT] * n + [Op.SECEDE, Op.WAIT, Op.REJOIN, Op.END]
    if wait is Wait.WORKER_CLIENT:
        return [Op.SECEDE] + [Op.SUBMIT] * n + [Op.WAIT, Op.REJOIN, Op.END]
    return [Op.SUBMIT] * n + [Op.ASYNC_WAIT, Op.END]
