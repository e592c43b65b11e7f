"""dask's small cluster-wide stores on the scheduler: the metadata tree
(``Client.set_metadata``/``get_metadata``) and the event log (``Client.log_event``/
``get_events``).

Both hold plain msgpack data exactly as it came off the wire, never a pickle: the client
checks that a value survives the codec before it sends it. The tree is nested dicts
addressed by a path of string keys; setting makes the dicts on the way, replacing a
non-dict in the way, as dask does. The event log keeps the latest
``config.EVENTS_PER_TOPIC`` events of each topic and at most ``config.EVENT_TOPICS``
topics, so a chatty program cannot grow the scheduler without bound.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ... import protocol as p
from ...config import EVENT_TOPICS, EVENTS_PER_TOPIC
from .state import SchedulerState


def metadata_request(state: SchedulerState, peer_id: str, msg: p.MetadataRequest) -> None:
    """Handler of ``MetadataRequest``: set or get the value at a path."""
    if msg.op == "set":
        reply = _set(state, msg)
    elif msg.op == "get":
        reply = _get(state, msg)
    else:
        reply = p.MetadataReply(msg.request_id, "invalid",
                                text=f"unknown metadata operation {msg.op!r}")
    state.send(peer_id, reply)


def _set(state: SchedulerState, msg: p.MetadataRequest) -> p.MetadataReply:
    if not msg.keys:
        return p.MetadataReply(msg.request_id, "invalid",
                               text="set_metadata needs a key (or a list of keys)")
    node = state.metadata
    for key in msg.keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[msg.keys[-1]] = msg.value
    return p.MetadataReply(msg.request_id, "ok")


def _get(state: SchedulerState, msg: p.MetadataRequest) -> p.MetadataReply:
    node: Any = state.metadata
    for depth, key in enumerate(msg.keys):
        if not isinstance(node, dict) or key not in node:
            path = msg.keys[:depth + 1]
            return p.MetadataReply(msg.request_id, "missing", text=f"no metadata at {path}")
        node = node[key]
    return p.MetadataReply(msg.request_id, "ok", node)


def event_request(state: SchedulerState, peer_id: str, msg: p.EventRequest) -> None:
    """Handler of ``EventRequest``: log an event to topics, or read topics' events."""
    if msg.op == "log":
        reply = _log(state, msg)
    elif msg.op == "get":
        topics = msg.topics or sorted(state.events)
        events = {t: list(state.events.get(t, ())) for t in topics}
        reply = p.EventReply(msg.request_id, "ok", events)
    else:
        reply = p.EventReply(msg.request_id, "invalid", text=f"unknown event operation {msg.op!r}")
    state.send(peer_id, reply)


def _log(state: SchedulerState, msg: p.EventRequest) -> p.EventReply:
    if not msg.topics or not all(msg.topics):
        return p.EventReply(msg.request_id, "invalid",
                            text="log_event needs a topic: a non-empty string (or a list of them)")
    new = [t for t in set(msg.topics) if t not in state.events]
    if len(state.events) + len(new) > EVENT_TOPICS:
        return p.EventReply(msg.request_id, "invalid", text=(
            f"the scheduler keeps at most {EVENT_TOPICS} event topics, and logging to "
            f"{sorted(new)[:3]} would exceed that: log to fewer topics"))
    for topic in msg.topics:
        log = state.events.get(topic)
        if log is None:
            log = state.events[topic] = deque(maxlen=EVENTS_PER_TOPIC)
        log.append([msg.stamp, msg.msg])
    return p.EventReply(msg.request_id, "ok")
