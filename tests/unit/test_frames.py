"""Serialization for the bulk data path: large buffers travel beside the pickle."""

import pickle
import threading

import pytest

import trioflow
from trioflow import serialize


class Blob:
    """Pickles its buffer out of band, as numpy arrays do under protocol 5."""

    def __init__(self, data):
        self.data = data

    def __reduce_ex__(self, protocol):
        return Blob, (pickle.PickleBuffer(self.data),)

    def __eq__(self, other):
        return bytes(self.data) == bytes(other.data)


def test_frames_do_not_copy_large_buffers():
    big = bytearray(b"x" * (2 * serialize.OUT_OF_BAND_MIN))
    frames = serialize.dumps_frames({"big": Blob(big), "small": Blob(bytearray(b"s"))})
    assert len(frames) == 2 and frames[1].obj is big  # out of band: the bytearray itself
    assert len(frames[0]) < 1000  # the pickle stream does not contain the buffer
    restored = serialize.loads_frames([frames[0], memoryview(bytearray(frames[1]))])
    assert restored == {"big": Blob(big), "small": Blob(b"s")}


def test_plain_bytes_and_small_values():
    data = b"raw" * 100_000
    frames = serialize.dumps_frames(data)
    assert frames[1] is data  # sent from the object itself
    assert serialize.loads_frames(frames) == data
    assert len(serialize.dumps_frames([1, 2, 3])) == 1  # no large buffer: one frame
    assert serialize.loads_value(serialize.dumps_frames([1, 2, 3])) == [1, 2, 3]
    own = bytearray(b"y" * 10)
    assert serialize.loads_frames([b"A", memoryview(own)]) is own  # handed over, not copied
    assert serialize.loads_value(serialize.dumps_value(5)) == 5


def test_unpicklable_value_names_the_culprit():
    with pytest.raises(trioflow.SerializationError, match=r"value\['lock'\]"):
        serialize.dumps_frames({"lock": threading.Lock()})
