"""dask's metadata tree and event log, as the clients see them.

``client.set_metadata(["job", "stage"], 3)`` stores a value on the scheduler at a path
of string keys, for any client or task of the cluster to read with ``get_metadata``;
``client.log_event("progress", {"done": 10})`` appends an event to a topic, and
``get_events("progress")`` reads them back as ``(timestamp, msg)`` pairs, oldest first.

The scheduler never unpickles, so values and events are plain data: what msgpack
carries (None, booleans, numbers, strings, bytes, lists, tuples and string-keyed dicts
of those). A value is checked here, by passing it through the wire's own codec
settings, before it is sent; what comes back is what the codec gives (tuples read back
as lists), in dask as in trioflow. Anything else raises ``TypeError`` at once, naming
what to do, instead of failing the connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import msgpack

from . import protocol as p
from .config import CLIENT_CALL_TIMEOUT
from .engine.session import Session
from .errors import ProtocolError

_NO_DEFAULT: Any = object()


def _path(keys: str | Iterable[str], what: str) -> list[str]:
    """dask's keys argument (one key, or a list of them) as a list of strings.

    Raises:
        TypeError: a key is not a string.
    """
    path = [keys] if isinstance(keys, str) else list(keys)
    bad = [k for k in path if not isinstance(k, str)]
    if bad:
        raise TypeError(f"{what}: keys are strings (or a list of strings), got {bad[0]!r}")
    return path


def _plain(value: Any, what: str) -> Any:
    """``value`` as the scheduler will hold it (passed through the wire's codec).

    Raises:
        TypeError: msgpack cannot carry it.
    """
    try:
        return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False,
                               strict_map_key=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(
            f"{what}: {type(value).__name__} values cannot be stored on the scheduler, "
            f"which keeps plain data only (None, bools, numbers, strings, bytes, lists, "
            f"string-keyed dicts) and never unpickles: convert it, or publish it with "
            f"client.publish_dataset ({exc})") from None


def _topics(topic: str | Iterable[str]) -> list[str]:
    topics = [topic] if isinstance(topic, str) else list(topic)
    if not topics or any(not isinstance(t, str) or not t for t in topics):
        raise TypeError(f"log_event: a topic is a non-empty string (or a list of them), "
                        f"got {topic!r}")
    return topics


def _value(reply: p.MetadataReply, default: Any) -> Any:
    if reply.status == "ok":
        return reply.value
    if reply.status == "missing":
        if default is _NO_DEFAULT:
            raise KeyError(reply.text)
        return default
    if reply.status == "invalid":
        raise ValueError(reply.text)
    raise ProtocolError(f"the scheduler answered a metadata request with {reply.status!r}")


def _events(reply: p.EventReply, topic: str | None) -> Any:
    if reply.status == "invalid":
        raise ValueError(reply.text)
    if reply.status != "ok":
        raise ProtocolError(f"the scheduler answered an event request with {reply.status!r}")
    events = {t: tuple((stamp, msg) for stamp, msg in pairs)
              for t, pairs in (reply.events or {}).items()}
    return events.get(topic, ()) if topic is not None else events


class SyncMetadata:
    """The blocking client's metadata and events (mixed into ``Client``)."""

    _session: Session

    def _call(self, afn: Any) -> Any:
        return self._on_loop(afn, CLIENT_CALL_TIMEOUT)  # type: ignore[attr-defined]  # (the client's)

    def set_metadata(self, keys: str | Iterable[str], value: Any) -> None:
        """Store ``value`` (plain data) at the path ``keys`` of the scheduler's
        metadata tree, making the dicts on the way.

        Raises:
            TypeError: a key that is not a string, or a value msgpack cannot carry.
        """
        path, plain = _path(keys, "set_metadata"), _plain(value, "set_metadata")
        services = self._session.services
        _value(self._call(lambda: services.metadata("set", path, plain)), None)

    def get_metadata(self, keys: str | Iterable[str], default: Any = _NO_DEFAULT) -> Any:
        """The value at the path ``keys`` (an empty list: the whole tree).

        Raises:
            KeyError: nothing is there, and no ``default`` was given.
        """
        path = _path(keys, "get_metadata")
        services = self._session.services
        return _value(self._call(lambda: services.metadata("get", path)), default)

    def log_event(self, topic: str | Iterable[str], msg: Any) -> None:
        """Append ``msg`` (plain data), stamped with this machine's clock, to the
        scheduler's log of ``topic`` (or of each of a list of topics).

        Raises:
            TypeError: a bad topic, or a message msgpack cannot carry.
            ValueError: the scheduler keeps no more topics (``config.EVENT_TOPICS``).
        """
        topics, plain, stamp = _topics(topic), _plain(msg, "log_event"), time.time()
        services = self._session.services
        _events(self._call(lambda: services.events("log", topics, plain, stamp)), None)

    def get_events(self, topic: str | None = None) -> Any:
        """The events of ``topic`` as ``(timestamp, msg)`` pairs, oldest first (a
        tuple); without a topic, a dict of every topic's."""
        topics = [] if topic is None else [topic]
        services = self._session.services
        return _events(self._call(lambda: services.events("get", topics)), topic)


class AsyncMetadata:
    """``AsyncClient``'s metadata and events: the blocking client's methods, awaited."""

    _session: Session

    async def set_metadata(self, keys: str | Iterable[str], value: Any) -> None:
        """See the blocking client's ``set_metadata``."""
        path, plain = _path(keys, "set_metadata"), _plain(value, "set_metadata")
        services = self._session.services
        _value(await self._on_trio(  # type: ignore[attr-defined]  # (AsyncioSupport's)
            lambda: services.metadata("set", path, plain)), None)

    async def get_metadata(self, keys: str | Iterable[str], default: Any = _NO_DEFAULT) -> Any:
        """See the blocking client's ``get_metadata``."""
        path = _path(keys, "get_metadata")
        services = self._session.services
        return _value(await self._on_trio(  # type: ignore[attr-defined]
            lambda: services.metadata("get", path)), default)

    async def log_event(self, topic: str | Iterable[str], msg: Any) -> None:
        """See the blocking client's ``log_event``."""
        topics, plain, stamp = _topics(topic), _plain(msg, "log_event"), time.time()
        services = self._session.services
        _events(await self._on_trio(  # type: ignore[attr-defined]
            lambda: services.events("log", topics, plain, stamp)), None)

    async def get_events(self, topic: str | None = None) -> Any:
        """See the blocking client's ``get_events``."""
        topics = [] if topic is None else [topic]
        services = self._session.services
        return _events(await self._on_trio(  # type: ignore[attr-defined]
            lambda: services.events("get", topics)), topic)
