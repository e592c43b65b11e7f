"""The wire envelope: round trips, and garbage becomes RemoteProtocolError only."""

import msgpack
import pytest

from trioflow import protocol as p
from trioflow.errors import ProtocolVersionError, RemoteProtocolError


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
    frame = msgpack.packb([1, [["release-keys", ["a"], "future-field"], ["cancel-keys", ["b"]]]])
    assert p.decode_frame(frame) == [p.ReleaseKeys(["a"]), p.CancelKeys(["b"], "cancelled")]


@pytest.mark.parametrize(
    "data, words",
    [
        (b"\xc1garbage", "undecodable"),
        (msgpack.packb({"v": 1}), "a frame must be"),
        (msgpack.packb([1, [["no-such-op"]]]), "unknown message type"),
        (msgpack.packb([1, [["release-keys", "not-a-list"]]]), "field 'keys'"),
        (msgpack.packb([1, [["release-keys", [1, 2]]]]), "field 'keys'"),
        (msgpack.packb([1, [["submit-task", "k"]]]), "submit-task"),
        (msgpack.packb([1, [[]]]), "non-empty array"),
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
    assert p.choose_version([0, 1, 5]) == 1
