"""Events the scheduler core consumes and commands it emits.

Events are facts in the past tense; commands are imperatives for the shell. Both are
plain frozen data: a test or the simulator can build them by hand. (The worker core's
commands live with it, in :mod:`trioflow.core.worker`.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ..protocol.messages import Hello

_C = TypeVar("_C")

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**kwargs: Any) -> Callable[[_C], _C]:
        return lambda f: f


@dataclass_transform(frozen_default=True)
def command(cls: type[_C]) -> type[_C]:
    """A core command class: immutable by contract, checked statically (as protocol
    messages are, see ``messages.message``): the core makes one ``Send`` per message it
    sends, and a frozen attrs ``__init__`` costs about 4x a plain slotted one."""
    return attrs.define(cls, unsafe_hash=True)


class Match:
    """A partial pattern for tests: equal to every instance of ``cls`` whose named
    fields equal ``fields`` (dask's ``Instruction.match``).

    A field's value may be a ``Match`` itself, so patterns nest::

        assert out == [Send.match(to="w", message=Match(p.ComputeTask, key="a"))]

    Fields not named are not compared.
    """

    __slots__ = ("cls", "fields")
    __hash__ = None  # type: ignore[assignment]  # (equality is a pattern test, not identity)

    def __init__(self, cls: type, /, **fields: object) -> None:
        self.cls = cls
        self.fields = fields

    def __eq__(self, other: object) -> bool:
        return isinstance(other, self.cls) and all(
            getattr(other, name, _MISSING) == value for name, value in self.fields.items()
        )

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{self.cls.__name__}.match({shown})"


_MISSING = object()


class Matchable:
    """Base of the core's commands: gives them ``Cls.match(**fields)``."""

    __slots__ = ()

    @classmethod
    def match(cls, **fields: object) -> Match:
        """A pattern equal to any ``cls`` whose named fields equal ``fields``."""
        return Match(cls, **fields)


@attrs.frozen
class PeerJoined:
    """A peer finished its handshake. ``hello`` is its Hello message."""

    peer_id: str
    hello: Hello


@attrs.frozen
class PeerLeft:
    """A peer's connection is gone (closed, broken, or timed out)."""

    peer_id: str
    reason: str = ""


@attrs.frozen
class MessagesReceived:
    """One frame's worth of messages from a peer, in order."""

    peer_id: str
    #: decoded protocol messages (any class of :mod:`trioflow.protocol.messages`)
    messages: list[Any]


@command
class Send(Matchable):
    """Queue ``message`` (a protocol message) for peer ``to`` (the shell batches per peer)."""

    to: str
    message: Any


@command
class Close(Matchable):
    """Close the connection to ``to`` with WebSocket close ``code``."""

    to: str
    code: int
    reason: str


@attrs.frozen
class TimePassed:
    """The shell's clock reads ``now`` (seconds, any fixed origin): the core's timers
    (the no-workers timeout) compare against it. The core has no clock of its own."""

    now: float


#: what ``Scheduler.handle`` accepts
SchedulerEvent = PeerJoined | PeerLeft | MessagesReceived | TimePassed
#: what ``Scheduler.handle`` returns a list of
SchedulerCommand = Send | Close
