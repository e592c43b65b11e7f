"""Events the scheduler core consumes and commands it emits.

Events are facts in the past tense; commands are imperatives for the shell. Both are
plain frozen data: a test or the simulator can build them by hand. (The worker core's
commands live with it, in :mod:`trioflow.core.worker`.)
"""

from __future__ import annotations

from typing import Any

import attrs

from ..protocol.messages import Hello


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


@attrs.frozen
class Send:
    """Queue ``message`` (a protocol message) for peer ``to`` (the shell batches per peer)."""

    to: str
    message: Any


@attrs.frozen
class Close:
    """Close the connection to ``to`` with WebSocket close ``code``."""

    to: str
    code: int
    reason: str


#: what ``Scheduler.handle`` accepts
SchedulerEvent = PeerJoined | PeerLeft | MessagesReceived
#: what ``Scheduler.handle`` returns a list of
SchedulerCommand = Send | Close
