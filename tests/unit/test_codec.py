"""The wire envelope: round trips, and garbage becomes RemoteProtocolError only."""

import re

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioflow import protocol as p
from trioflow.errors import ProtocolVersionError, RemoteProtocolError
from trioflow.protocol.registry import SPECS, TAGS, from_wire, to_wire


def test_round_trip_batch():
    msgs = [
        p.SubmitTask("k1", "f", b"\x00payload", ["d1", "d2"], "", False, 1, 0, [], False),
        p.KeyFinished("k1", 3, b"abc", "builtins.int"),
        p.ReleaseKeys(["k1"]),
        p.TaskFinished("k", 2, 10, None, 0.5, "x"),
    ]
    assert p.decode_frame(p.encode_frame(msgs)) == msgs


def test_trailing_fields_are_optional_and_extra_ones_ignored():
    # a peer from the future appends a field; an older peer omits defaulted ones
    frame = msgpack.packb([p.PROTOCOL_VERSION, [["free-keys", ["a"], "future-field"], ["cancel-keys", ["b"]]]])
    assert p.decode_frame(frame) == [p.FreeKeys(["a"]), p.CancelKeys(["b"], "cancelled")]


def test_trailing_defaults_are_left_out_of_the_wire_form():
    # every default of SubmitTask's tail: only the four required fields travel
    (short,) = msgpack.unpackb(p.encode_frame([p.SubmitTask("k", "f", b"x", [])]))[1]
    assert short == ["submit-task", "k", "f", b"x", []]
    # a non-default field keeps everything before it (0 is not the default False)
    odd = p.SubmitTask("k", "f", b"x", [], "", False, 0, 0, [], True)
    (wire,) = msgpack.unpackb(p.encode_frame([odd]))[1]
    assert wire == to_wire(odd)[:11]
    assert p.decode_frame(p.encode_frame([odd])) == [odd]
    # a float field holding the int 0 is sent: a decoded default would change its type
    done = p.TaskFinished("k", 1, 0, None, 0)
    assert msgpack.unpackb(p.encode_frame([done]))[1] == [["task-finished", "k", 1, 0, None, 0]]


@pytest.mark.parametrize(
    "data, words",
    [
        (b"\xc1garbage", "undecodable"),
        (msgpack.packb({"v": 1}), "a frame must be"),
        (msgpack.packb([p.PROTOCOL_VERSION, [["no-such-op"]]]), "unknown message type"),
        (msgpack.packb([p.PROTOCOL_VERSION, [["release-keys", "not-a-list"]]]), "field 'keys'"),
        (msgpack.packb([p.PROTOCOL_VERSION, [["release-keys", [1, 2]]]]), "field 'keys'"),
        (msgpack.packb([p.PROTOCOL_VERSION, [["submit-task", "k"]]]), "submit-task"),
        (msgpack.packb([p.PROTOCOL_VERSION, [[]]]), "non-empty array"),
        ("text frame", "binary"),
    ],
)
def test_garbage_is_a_remote_protocol_error(data, words):
    with pytest.raises(RemoteProtocolError, match=words):
        p.decode_frame(data)


def test_version_mismatch():
    with pytest.raises(ProtocolVersionError):
        p.decode_frame(msgpack.packb([99, []]))
    with pytest.raises(ProtocolVersionError, match="same trioflow version"):
        p.choose_version([7, 8])
    assert p.choose_version([0, 1, 2, 3, 5]) == 3
    with pytest.raises(ProtocolVersionError):  # 0.1's workers and clients speak 1
        p.choose_version([1])
    with pytest.raises(ProtocolVersionError):  # 0.2's speak 2
        p.choose_version([2])


# the codec's compiled encoders and decoders must agree with to_wire/from_wire exactly

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False)
    | st.text(max_size=3) | st.binary(max_size=3),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


@given(st.sampled_from(sorted(TAGS)), st.lists(_values, max_size=12))
def test_compiled_decoders_agree_with_from_wire(tag, fields):
    item = [tag, *fields]
    try:
        expected = from_wire(list(item))
    except RemoteProtocolError as exc:
        with pytest.raises(RemoteProtocolError, match=re.escape(str(exc))):
            p.decode_frame(msgpack.packb([p.PROTOCOL_VERSION, [item]]))
    else:
        assert p.decode_frame(msgpack.packb([p.PROTOCOL_VERSION, [item]])) == [expected]
        (wire,) = msgpack.unpackb(p.encode_frame([expected]))[1]
        assert wire == to_wire(expected)[:len(wire)]  # at most the defaulted tail is left out
        assert p.decode_frame(p.encode_frame([expected])) == [expected]


def test_every_message_class_has_a_compiled_decoder():
    from trioflow.protocol.codec import _compile_decoder

    assert [cls for cls in SPECS if _compile_decoder(cls) is None] == []


def _strategy(tp):
    import types
    import typing

    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return _values
    if tp is float:
        return st.floats(allow_nan=False) | st.integers(-3, 3)
    if tp in (str, bytes, int, bool):
        return {str: st.text(max_size=3), bytes: st.binary(max_size=3),
                int: st.integers(-3, 3), bool: st.booleans()}[tp]
    if tp is type(None):
        return st.none()
    if origin is list:
        return st.lists(_strategy(typing.get_args(tp)[0]), max_size=3)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[_strategy(a) for a in typing.get_args(tp)])
    raise TypeError(tp)


@st.composite
def _valid_items(draw):
    import attrs

    cls = draw(st.sampled_from(sorted(SPECS, key=lambda c: c.__name__)))
    tag = SPECS[cls][0]
    fields = [draw(_strategy(f.type)) for f in attrs.fields(cls)]
    cut = draw(st.integers(0, len(fields)))  # sometimes drop trailing fields
    return [tag, *fields[:cut]] if draw(st.booleans()) else [tag, *fields]


@given(_valid_items())
def test_compiled_decoders_agree_with_from_wire_on_well_typed_messages(item):
    test_compiled_decoders_agree_with_from_wire.hypothesis.inner_test(item[0], item[1:])


# --------------------------------------------- the shared __eq__/__hash__/__repr__ (registry)

@st.composite
def _message_pairs(draw):
    """A message and a copy with the same field values, built separately."""
    import attrs

    cls = draw(st.sampled_from(sorted(SPECS, key=lambda c: c.__name__)))
    values = [draw(_strategy(f.type)) for f in attrs.fields(cls)]
    return cls, values


@given(_message_pairs())
def test_messages_compare_hash_and_print_by_value(pair):
    import copy
    import pickle

    cls, values = pair
    a, b = cls(*values), cls(*copy.deepcopy(values))
    assert a == b and not a != b
    assert pickle.loads(pickle.dumps(a)) == a
    names = SPECS[cls][3]
    assert repr(a) == f"{cls.__name__}({', '.join(f'{n}={v!r}' for n, v in zip(names, values))})"
    try:
        hash(a)
    except TypeError:  # a list field: unhashable, as a tuple holding a list is
        assert any(type(v) is list for v in values)
    else:
        assert hash(a) == hash(b)
    for i, v in enumerate(values):  # one field changed: not equal any more
        changed = [*values]
        changed[i] = ("other", v)
        assert cls(*changed) != a


def test_a_message_never_equals_another_class_with_the_same_values():
    assert p.ReleaseKeys(["k"]) != p.AcquireKeys(["k"])
    assert p.Heartbeat() == p.Heartbeat() and hash(p.Heartbeat()) == hash(p.Heartbeat())
    assert p.ReleaseKeys(["k"]) != ["k"]


def test_field_types_are_the_evaluated_annotations():
    """What ``attrs.resolve_types`` gave before: every field's type is a type, never text."""
    import typing

    import attrs

    for cls in SPECS:
        hints = typing.get_type_hints(cls)
        assert {f.name: f.type for f in attrs.fields(cls)} == hints, cls
