"""Hypothesis strategies for wire messages and frames (imports Hypothesis).

Every message class registered in ``trioflow.protocol`` gets a strategy built with
``st.builds`` from its attrs field annotations, so a new message is fuzzed the day it
is added. String fields favour a few short keys (``"a"``, ``"b"``, ...) so that fuzzed
messages refer to each other and to real tasks, not only to random text.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import attrs
from hypothesis import strategies as st

from .. import protocol as p
from ..protocol.registry import TAGS

__all__ = ["any_message", "frames", "garbage_frames", "message_strategy", "msgpack_values"]

#: keys fuzzed messages tend to share
KEYS = ("a", "b", "c", "p0-c0-1")

#: values msgpack can carry (and give back equal): what an ``Any`` field may hold
msgpack_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10,
)


def _for_type(tp: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(tp)
    if tp is Any:
        return msgpack_values
    if tp is str:
        return st.sampled_from(KEYS) | st.text(max_size=30)
    if tp is bytes:
        return st.binary(max_size=64)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(0, 5) | st.integers(-(2**63), 2**64 - 1)
    if tp is float:
        return st.floats(allow_nan=False)
    if tp is type(None):
        return st.none()
    if origin is list:
        (item,) = typing.get_args(tp)
        return st.lists(_for_type(item), max_size=4)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_for_type(a) for a in typing.get_args(tp)])
    raise TypeError(f"no strategy for message field type {tp!r}")  # pragma: no cover


def message_strategy(cls: type) -> st.SearchStrategy[Any]:
    """Well-formed instances of the message class ``cls``."""
    fields = attrs.fields(cls)
    return st.builds(cls, *[_for_type(f.type) for f in fields])


def any_message() -> st.SearchStrategy[Any]:
    """Any well-formed message of any registered type."""
    return st.one_of([message_strategy(cls) for cls in TAGS.values()])


def frames(*, max_messages: int = 5) -> st.SearchStrategy[bytes]:
    """Encoded frames of well-formed messages (what a buggy but honest peer sends)."""
    return st.lists(any_message(), max_size=max_messages).map(p.encode_frame)


def garbage_frames() -> st.SearchStrategy[bytes]:
    """Bytes that are rarely a valid frame: random bytes, msgpack of random values, and
    valid frames with bytes flipped, cut or appended."""
    import msgpack

    def mutate(args: tuple[bytes, int, int, bytes]) -> bytes:
        frame, pos, flip, tail = args
        if not frame:
            return tail
        i = pos % len(frame)
        return frame[:i] + bytes([frame[i] ^ (flip or 1)]) + frame[i + 1:] + tail

    return st.one_of(
        st.binary(max_size=200),
        msgpack_values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
        st.tuples(frames(), st.integers(0, 10_000), st.integers(0, 255),
                  st.binary(max_size=8)).map(mutate),
        frames().map(lambda f: f[: len(f) // 2]),
    )
