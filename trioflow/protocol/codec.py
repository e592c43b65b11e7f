"""The versioned msgpack envelope: one WebSocket binary message = one frame = many messages.

A frame is the msgpack array ``[version, [message, message, ...]]``; each message is
``[tag, field...]`` (see :mod:`.messages`). Batching is natural: a connection's writer
sends everything queued since its last send as one frame.

Decoding is the single trust boundary: anything that is not a well-formed frame of our
version becomes a :class:`~trioflow.errors.RemoteProtocolError`, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgpack

from ..errors import ProtocolVersionError, RemoteProtocolError
from .messages import from_wire, to_wire

#: The protocol major version this code speaks. Bump on any incompatible change.
PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

#: Application close codes (RFC 6455 leaves 4000-4999 to applications).
CLOSE_PROTOCOL_ERROR = 4000
CLOSE_VERSION_MISMATCH = 4001
CLOSE_AUTH_FAILED = 4003
CLOSE_SHUTDOWN = 4004
CLOSE_REPLACED = 4005



def encode_frame(messages: Iterable[Any], version: int = PROTOCOL_VERSION) -> bytes:
    """Encode messages as one frame."""
    return msgpack.packb([version, [to_wire(m) for m in messages]], use_bin_type=True)


def decode_frame(data: bytes | str, version: int | None = PROTOCOL_VERSION) -> list[Any]:
    """Decode one frame into messages (``version=None`` accepts any version: the hello).

    Raises:
        RemoteProtocolError: not a frame, a message is malformed, or the version differs
            (``ProtocolVersionError``).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise RemoteProtocolError("frames must be binary WebSocket messages, got text")
    try:
        frame = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise RemoteProtocolError(f"undecodable frame: {exc.__class__.__name__}") from None
    if type(frame) is not list or len(frame) != 2 or type(frame[1]) is not list:
        raise RemoteProtocolError("a frame must be [version, [messages]]")
    if version is not None and frame[0] != version:
        raise ProtocolVersionError(f"frame has protocol version {frame[0]!r}, expected {version}")
    return [from_wire(item) for item in frame[1]]


def choose_version(offered: list[int]) -> int:
    """The highest version both sides speak.

    Raises:
        ProtocolVersionError: none in common.
    """
    common = set(offered) & set(SUPPORTED_VERSIONS)
    if not common:
        raise ProtocolVersionError(
            f"peer speaks protocol versions {offered}, this scheduler speaks "
            f"{list(SUPPORTED_VERSIONS)}: install the same trioflow version everywhere"
        )
    return max(common)
