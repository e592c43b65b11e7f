"""How a message class becomes part of the wire: its tag, its positional form, and the
checks a decoded field must pass (the rules are in :mod:`.messages`)."""

from __future__ import annotations

import inspect
import operator
import sys
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ..errors import RemoteProtocolError

_M = TypeVar("_M")
_F = TypeVar("_F")

if TYPE_CHECKING:  # (typing.dataclass_transform is 3.11+; the checker has the backport)
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**kwargs: Any) -> Callable[[_F], _F]:
        """At run time a no-op: it only tells type checkers what ``message`` makes."""
        return lambda f: f

#: wire tag -> message class
TAGS: dict[str, type] = {}
#: message class -> (tag, number of fields, per-field checkers, field names)
SPECS: dict[type, tuple[str, int, tuple[Callable[[Any], bool], ...], tuple[str, ...]]] = {}


def _checker(tp: Any) -> Callable[[Any], bool]:
    """A fast predicate telling whether a decoded value fits annotation ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return lambda v: True
    if tp is float:
        return lambda v: type(v) is float or type(v) is int
    if tp in (str, bytes, int, bool):
        return lambda v: type(v) is tp
    if origin is list:
        (item,) = typing.get_args(tp)
        check = _checker(item)
        return lambda v: type(v) is list and all(check(x) for x in v)
    if origin in (typing.Union, types.UnionType):
        checks = [_checker(a) for a in typing.get_args(tp)]
        return lambda v: any(c(v) for c in checks)
    if tp is type(None):
        return lambda v: v is None
    raise TypeError(f"unsupported message field type {tp!r}")  # pragma: no cover


#: message class -> its field values as one value (a tuple, but for one field)
_VALUES: dict[type, Callable[[Any], Any]] = {}
#: (module, annotation text) -> the type it names
_ANNOTATIONS: dict[tuple[str, str], Any] = {}


def _evaluated(cls: type) -> dict[str, Any]:
    """``cls``'s own annotations, each string evaluated in its module (as
    ``typing.get_type_hints`` would; the texts are our own message definitions)."""
    module = cls.__module__
    namespace = vars(sys.modules[module])
    out: dict[str, Any] = {}
    for name, tp in inspect.get_annotations(cls).items():
        if isinstance(tp, str):
            known = _ANNOTATIONS.get((module, tp), _MISSING)
            if known is _MISSING:
                known = _ANNOTATIONS[(module, tp)] = eval(tp, namespace)
            tp = known
        out[name] = tp
    return out


_MISSING = object()


def _no_values(msg: Any) -> tuple[()]:
    return ()


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    values = _VALUES[self.__class__]
    return bool(values(self) == values(other))


def _hash(self: Any) -> int:
    return hash((self.__class__, _VALUES[self.__class__](self)))


def _repr(self: Any) -> str:
    names = SPECS[self.__class__][3]
    inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
    return f"{self.__class__.__qualname__}({inner})"


@dataclass_transform(frozen_default=True)
def message(tag: str) -> Callable[[type[_M]], type[_M]]:
    """Class decorator: make ``cls`` an immutable attrs message with wire tag ``tag``."""

    def wrap(cls: type[_M]) -> type[_M]:
        # Immutable by contract, checked statically (``dataclass_transform`` tells type
        # checkers the class is frozen, so an assignment to a field is a mypy error), not
        # at run time: a frozen attrs class's ``__init__`` sets each field through
        # ``object.__setattr__``, about 3x the cost of a plain slotted one (1 us against
        # 0.34 us for a SubmitTask, process time), and every task builds and decodes
        # several messages in each process it crosses.
        #
        # Start-up (every process defines all ~50 messages, and it was the largest item
        # of a node's imports): the annotations are evaluated here, once per distinct
        # text, instead of by ``attrs.resolve_types`` per class; and ``__eq__``,
        # ``__hash__`` (by value, as frozen classes hash) and ``__repr__`` are shared
        # functions (below) instead of code attrs generates and compiles per class.
        # Only ``__init__``, the hot one, is generated.
        cls.__annotations__ = _evaluated(cls)
        cls = attrs.define(cls, repr=False, eq=False)
        fields = attrs.fields(cls)  # type: ignore[arg-type]
        names = tuple(f.name for f in fields)
        _VALUES[cls] = operator.attrgetter(*names) if names else _no_values
        type.__setattr__(cls, "__eq__", _eq)
        type.__setattr__(cls, "__hash__", _hash)
        type.__setattr__(cls, "__repr__", _repr)
        checks = tuple(_checker(f.type) for f in fields)
        if tag in TAGS:  # pragma: no cover - programming error
            raise ValueError(f"duplicate message tag {tag!r}")
        TAGS[tag] = cls
        SPECS[cls] = (tag, len(fields), checks, names)
        return cls

    return wrap


def to_wire(msg: Any) -> list[Any]:
    """The positional list form of ``msg``: ``[tag, *fields]``."""
    tag, _, _, names = SPECS[type(msg)]
    return [tag, *[getattr(msg, n) for n in names]]


def from_wire(item: Any) -> Any:
    """Rebuild a message from its list form, checking every field.

    Raises:
        RemoteProtocolError: the item is not a well-formed message of a known tag.
    """
    if type(item) is not list or not item:
        raise RemoteProtocolError(f"a message must be a non-empty array, got {type(item).__name__}")
    cls = TAGS.get(item[0]) if type(item[0]) is str else None
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {item[0]!r}")
    tag, n, checks, names = SPECS[cls]
    values = item[1 : n + 1]
    for i, value in enumerate(values):
        if not checks[i](value):
            raise RemoteProtocolError(
                f"{tag}: field {names[i]!r} has a value of type {type(value).__name__}"
            )
    try:
        return cls(*values)
    except TypeError as exc:  # missing required fields
        raise RemoteProtocolError(f"{tag}: {exc}") from None
