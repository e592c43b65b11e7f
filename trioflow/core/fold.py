"""Folding a worker's slot reports into the message just before them in its stream.

A worker reports every slot change of a run (``Seceded``, ``RejoinRequested``,
``Rejoined``) so that the scheduler's slot accounting and its deadlock rule see what the
worker's ledger sees. On the recursive path these reports are about a third of what a
worker sends, and most of them are queued right behind a message that goes out anyway
(a ``TaskFinished``, a ``TaskPlaced``, a ``WaitKeys``, a ``ReleaseKeys``, or another
report already folded). :func:`fold` turns such a pair into one message: the carrier,
with the report appended to its ``slot_reports`` field as a ``(kind, key, run_id)``
triple.

Why the scheduler's records stay exact: the report was *adjacent* to its carrier in the
ordered stream, so the scheduler applying the carrier and then its reports, in order
(``scheduler.waits.folded_reports``), applies the same messages in the same order as
before. Only the frame boundaries can differ, and every frame boundary is a prefix of the
stream either way (``docs/design/local-placement.md`` §2.7: the deadlock rule's lemma
holds after any prefix).

Folding is used only towards a scheduler that said it applies folded reports
(``Welcome.folds_slot_reports``): an older scheduler of the same protocol version would
ignore the field and lose the reports. The simulator folds the same way
(:func:`append_folded` on its links).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, MutableSequence
from typing import Any

import attrs

from .. import protocol as p

#: the ``kind`` of a folded report, in ``slot_reports``
SECEDED = 1
REJOIN_REQUESTED = 2
REJOINED = 3

#: report message type -> its kind
KINDS: dict[type, int] = {p.Seceded: SECEDED, p.RejoinRequested: REJOIN_REQUESTED,
                          p.Rejoined: REJOINED}
#: kind -> the report message it stands for
REPORTS: dict[int, type] = {kind: cls for cls, kind in KINDS.items()}
#: the messages that can carry folded reports (each has a trailing ``slot_reports``)
CARRIERS: frozenset[type] = frozenset({p.TaskFinished, p.TaskPlaced, p.WaitKeys, p.ReleaseKeys})


def _one_tuple(get: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    return lambda msg: (get(msg),)


#: carrier type -> a getter of its fields but the last, ``slot_reports`` (wire order)
_FIELDS: dict[type, Callable[[Any], tuple[Any, ...]]] = {}
for _cls in CARRIERS:
    _names = [f.name for f in attrs.fields(_cls)]
    assert _names[-1] == "slot_reports", _names
    if len(_names) > 2:
        _FIELDS[_cls] = operator.attrgetter(*_names[:-1])
    else:  # (attrgetter of one name returns the value, not a 1-tuple)
        _FIELDS[_cls] = _one_tuple(operator.attrgetter(_names[0]))


def fold(prev: Any, msg: Any) -> Any | None:
    """``prev`` with the slot report ``msg`` folded in, or None if they do not fold
    (``msg`` is no slot report, or ``prev`` cannot carry one). ``prev`` itself is
    unchanged (a new message; built positionally: ``attrs.evolve`` costs 4x as much,
    more than the separate message it saves)."""
    kind = KINDS.get(type(msg))
    if kind is None:
        return None
    cls = type(prev)
    fields = _FIELDS.get(cls)
    if fields is None:
        return None
    return cls(*fields(prev), [*prev.slot_reports, kind, msg.key, msg.run_id])


def append_folded(queue: MutableSequence[Any], msg: Any,
                  merge: Callable[[Any, Any], Any | None] = fold) -> None:
    """Queue ``msg`` behind the unsent messages of ``queue``, folded into the last of
    them when ``merge`` (:func:`fold`, or a connection's hook) merges the two."""
    if queue:
        merged = merge(queue[-1], msg)
        if merged is not None:
            queue[-1] = merged
            return
    queue.append(msg)


def unfold(msg: Any) -> list[Any]:
    """The messages ``msg`` stands for, in stream order: itself without its folded
    reports, then each report (for tests and tools; the scheduler applies them in
    place).

    Raises:
        ValueError: ``slot_reports`` is malformed (not whole triples of a known kind,
            a str key and an int run id).
    """
    reports = getattr(msg, "slot_reports", None)
    if not reports:
        return [msg]
    return [attrs.evolve(msg, slot_reports=[]), *reports_of(reports)]


def reports_of(reports: list[Any]) -> list[Any]:
    """The report messages of a ``slot_reports`` list, in order.

    Raises:
        ValueError: the list is malformed (see :func:`unfold`).
    """
    if len(reports) % 3:
        raise ValueError(f"slot_reports holds {len(reports)} items, not whole "
                         "(kind, key, run_id) triples")
    out = []
    for i in range(0, len(reports), 3):
        kind, key, run_id = reports[i], reports[i + 1], reports[i + 2]
        cls = REPORTS.get(kind) if type(kind) is int else None
        if cls is None or type(key) is not str or type(run_id) is not int:
            raise ValueError(f"slot report {reports[i:i + 3]!r} is not (kind 1-3, key, run_id)")
        out.append(cls(key, run_id))
    return out
