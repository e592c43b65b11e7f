"""The wire codec is the trust boundary: garbage in gives messages or RemoteProtocolError,
never anything else, and every well-formed message survives an encode/decode round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioflow import protocol as p
from trioflow.errors import RemoteProtocolError
from trioflow.protocol.registry import SPECS, TAGS
from trioflow.testing.profiles import fuzz_settings
from trioflow.testing.wire import garbage_frames, message_strategy


def _decode_or_protocol_error(data, version):
    try:
        messages = p.decode_frame(data, version)
    except RemoteProtocolError:
        return
    assert isinstance(messages, list)
    for msg in messages:
        assert type(msg) in SPECS
        p.encode_frame([msg])  # whatever decoded must be sendable again


@fuzz_settings(scale=8)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes(data):
    _decode_or_protocol_error(data, p.PROTOCOL_VERSION)
    _decode_or_protocol_error(data, None)


@fuzz_settings(scale=8)
@given(data=garbage_frames())
def test_structured_garbage(data):
    _decode_or_protocol_error(data, p.PROTOCOL_VERSION)


def test_text_frames_are_refused():
    with pytest.raises(RemoteProtocolError):
        p.decode_frame("[1, []]")


@pytest.mark.parametrize("cls", sorted(TAGS.values(), key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
@fuzz_settings(scale=0.4)
@given(data=st.data())
def test_every_message_round_trips(cls, data):
    messages = data.draw(st.lists(message_strategy(cls), min_size=1, max_size=3))
    assert p.decode_frame(p.encode_frame(messages)) == messages
