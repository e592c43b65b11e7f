"""The versioned msgpack envelope: one WebSocket binary message = one frame = many messages.

A frame is the msgpack array ``[version, [message, message, ...]]``; each message is
``[tag, field...]`` (see :mod:`.messages`). Batching is natural: a connection's writer
sends everything queued since its last send as one frame.

Decoding is the single trust boundary: anything that is not a well-formed frame of our
version becomes a :class:`~trioflow.errors.RemoteProtocolError`, and nothing else.
"""

from __future__ import annotations

import operator
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import msgpack

from ..errors import AuthenticationError, ProtocolVersionError, RemoteProtocolError
from .registry import SPECS, TAGS, from_wire, to_wire

#: The protocol major version this code speaks. Bump on any incompatible change.
#: 2: ``task-placed`` (children queued on their parent's worker), no ``key-finished`` to
#: the worker that computed a key, and the messages of services added in 0.1's issues
#: (primitives, replicas, restart, run history); a version-1 peer is refused at its
#: hello with a message that names both versions, not closed in the middle of a run.
PROTOCOL_VERSION = 3
SUPPORTED_VERSIONS = (3,)

#: Application close codes (RFC 6455 leaves 4000-4999 to applications). The codes of
#: errors are the errors' own ``close_code``: one home for each.
CLOSE_PROTOCOL_ERROR = RemoteProtocolError.close_code
CLOSE_VERSION_MISMATCH = ProtocolVersionError.close_code
CLOSE_AUTH_FAILED = AuthenticationError.close_code
CLOSE_SHUTDOWN = 4004
CLOSE_REPLACED = 4005



# --------------------------------------------------------------------------- fast paths
#
# ``to_wire``/``from_wire`` (messages.py) are the definition. Per message class, the
# codec compiles equivalents once: an attrgetter for encoding, and a decoder that checks
# every field inline (the same rules as ``messages._checker``) and calls the class.
# Anything the compiled decoder does not accept as-is (missing trailing fields, a field
# of the wrong type, a class it cannot compile) goes to ``from_wire``, which fills the
# defaults or raises the RemoteProtocolError. So the results, and the errors, are
# exactly ``from_wire``'s.

#: item annotation -> the exact types its values may have, for lists checked in one C
#: pass (``set(map(type, v)) <= allowed``) rather than a generator per list
_ITEM_TYPES: dict[Any, frozenset[type]] = {
    str: frozenset({str}), bytes: frozenset({bytes}), int: frozenset({int}),
    bool: frozenset({bool}), float: frozenset({float, int}),
}


def _item_types(tp: Any) -> frozenset[type] | None:
    """The exact types a list item of annotation ``tp`` may have, if that is all its
    check is (None: it needs a real check)."""
    if tp in _ITEM_TYPES:
        return _ITEM_TYPES[tp]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        parts = [type(None) if a is type(None) else a for a in typing.get_args(tp)]
        allowed: set[type] = set()
        for a in parts:
            if a is type(None):
                allowed.add(a)
            elif a in _ITEM_TYPES:
                allowed |= _ITEM_TYPES[a]
            else:
                return None
        return frozenset(allowed)
    return None


def _condition(tp: Any, v: str, consts: dict[str, Any], depth: int = 0) -> str | None:
    """Python source testing that ``v`` fits annotation ``tp`` (None: anything fits);
    constants it names are added to ``consts``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return None
    if tp is float:
        return f"(type({v}) is float or type({v}) is int)"
    if tp in (str, bytes, int, bool):
        return f"type({v}) is {tp.__name__}"
    if tp is type(None):
        return f"{v} is None"
    if origin is list:
        (item,) = typing.get_args(tp)
        allowed = _item_types(item)
        if allowed is not None:
            name = f"T{len(consts)}"
            consts[name] = allowed
            return f"(type({v}) is list and set(map(type, {v})) <= {name})"
        x = f"x{depth}"
        inner = _condition(item, x, consts, depth + 1)
        if inner is None:
            return f"type({v}) is list"
        return f"(type({v}) is list and all({inner} for {x} in {v}))"
    if origin in (typing.Union, types.UnionType):
        parts = [_condition(a, v, consts, depth) for a in typing.get_args(tp)]
        if any(part is None for part in parts):
            return None
        return "(" + " or ".join(parts) + ")"  # type: ignore[arg-type]
    raise TypeError(f"no fast check for {tp!r}")


def _required(cls: type) -> int:
    """How many leading fields of ``cls`` have no default."""
    fields = attrs.fields(cls)
    return next((i for i, f in enumerate(fields) if f.default is not attrs.NOTHING),
                len(fields))


def _compile_decoder(cls: type) -> Callable[[list[Any]], Any] | None:
    """The fast decoder of ``cls``. It takes the full form and every shorter one that
    keeps the required fields (the encoder leaves defaulted trailing fields out); the
    missing fields get their defaults from ``cls`` itself, as in ``from_wire``."""
    fields = attrs.fields(cls)
    n = len(fields)
    required = _required(cls)
    consts: dict[str, Any] = {}
    try:
        conditions = [_condition(f.type, f"v{i}", consts) for i, f in enumerate(fields)]
    except TypeError:
        return None
    lines = ["def decode(item):", "    m = len(item)", f"    if m < {required + 1}:",
             "        return slow(item)"]
    for i, cond in enumerate(conditions):
        if i >= required:
            lines.append(f"    if m == {i + 1}:")
            lines.append("        return cls(" + ", ".join(f"v{j}" for j in range(i)) + ")")
        lines.append(f"    v{i} = item[{i + 1}]")
        if cond is not None:
            lines.append(f"    if not {cond}:")
            lines.append("        return slow(item)")
    lines.append("    return cls(" + ", ".join(f"v{i}" for i in range(n)) + ")")
    namespace: dict[str, Any] = {"cls": cls, "slow": from_wire, **consts}
    exec(compile("\n".join(lines), f"<decoder {cls.__name__}>", "exec"), namespace)
    return namespace["decode"]


def _is_default(default: Any, v: str) -> str | None:
    """Python source testing that ``v`` is exactly the field default ``default`` (same
    type, so a decoded default is what was sent), or None if it cannot be left out."""
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        made = default.factory() if not default.takes_self else None
        return f"(type({v}) is list and not {v})" if made == [] and type(made) is list else None
    if default is None or type(default) is bool:
        return f"{v} is {default!r}"
    if type(default) in (int, float, str, bytes):
        return f"(type({v}) is {type(default).__name__} and {v} == {default!r})"
    return None


def _compile_encoder(cls: type) -> Callable[[Any], list[Any]]:
    """``[tag, *fields]`` without the trailing fields that hold their defaults: they
    cost bytes, and a msgpack object each to build on the other side, while the
    decoder fills them in (the protocol's rule for missing trailing fields)."""
    tag, n, _, names = SPECS[cls]
    if n == 0:
        return lambda msg: [tag]
    fields = attrs.fields(cls)
    required = _required(cls)
    droppable = []
    for i in range(n - 1, required - 1, -1):  # the defaulted tail, from its end
        test = _is_default(fields[i].default, f"v{i}")
        if test is None:
            break
        droppable.append((i, test))
    if not droppable:
        if n == 1:
            get1 = operator.attrgetter(names[0])
            return lambda msg: [tag, get1(msg)]
        get = operator.attrgetter(*names)
        return lambda msg: [tag, *get(msg)]
    lines = ["def encode(msg):"]
    lines += [f"    v{i} = msg.{name}" for i, name in enumerate(names)]
    for i, test in droppable:
        lines.append(f"    if not {test}:")
        lines.append("        return [tag, " + "".join(f"v{j}, " for j in range(i + 1)) + "]")
    last = droppable[-1][0]
    lines.append("    return [tag, " + "".join(f"v{j}, " for j in range(last)) + "]")
    namespace: dict[str, Any] = {"tag": tag}
    exec(compile("\n".join(lines), f"<encoder {cls.__name__}>", "exec"), namespace)
    return namespace["encode"]


#: wire tag -> compiled decoder, message class -> compiled encoder (filled lazily, so
#: message classes registered after this module loads are covered too)
_DECODERS: dict[str, Callable[[list[Any]], Any]] = {}
_ENCODERS: dict[type, Callable[[Any], list[Any]]] = {}


def _decoder(tag: str) -> Callable[[list[Any]], Any]:
    cls = TAGS.get(tag)
    decode = _compile_decoder(cls) if cls is not None else None
    if decode is None:
        return from_wire
    _DECODERS[tag] = decode
    return decode


def _encoder(cls: type) -> Callable[[Any], list[Any]]:
    if cls not in SPECS:
        return to_wire
    encode = _ENCODERS[cls] = _compile_encoder(cls)
    return encode


def encode_frame(messages: Iterable[Any], version: int = PROTOCOL_VERSION) -> bytes:
    """Encode messages as one frame."""
    encoders = _ENCODERS
    items = []
    for m in messages:
        encode = encoders.get(type(m))
        if encode is None:
            encode = _encoder(type(m))
        items.append(encode(m))
    return msgpack.packb([version, items], use_bin_type=True)


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
    decoders = _DECODERS
    messages = []
    for item in frame[1]:
        if type(item) is list and item and type(item[0]) is str:
            decode = decoders.get(item[0])
            if decode is None:
                decode = _decoder(item[0])
            messages.append(decode(item))
        else:
            messages.append(from_wire(item))  # raises the right RemoteProtocolError
    return messages


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
