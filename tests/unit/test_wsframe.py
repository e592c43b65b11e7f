"""The RFC 6455 frame reader and writer: round trips, limits, and malformed input refused
with the right close code (and nothing but WebSocketError)."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from trioflow.protocol import wsframe as w
from trioflow.protocol.wsframe import FrameReader, WebSocketError


def server(limit=1 << 20):
    return FrameReader(client=False, max_message_size=limit)


def client(limit=1 << 20):
    return FrameReader(client=True, max_message_size=limit)


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 70_000])
@pytest.mark.parametrize("masked", [True, False])
def test_round_trip_every_length_encoding(n, masked):
    payload = os.urandom(n)
    frame = w.encode_frame(w.OP_BINARY, payload, masked=masked)
    reader = server() if masked else client()
    assert reader.feed(frame) == [(w.OP_BINARY, payload)]
    assert reader.buffered == 0


def test_byte_by_byte_and_many_frames_per_chunk():
    frames = b"".join(w.encode_frame(w.OP_BINARY, bytes([i]) * i, masked=True)
                      for i in range(1, 40))
    reader = server()
    got = []
    for i in range(len(frames)):
        got += reader.feed(frames[i:i + 1])
    assert got == [(w.OP_BINARY, bytes([i]) * i) for i in range(1, 40)]
    assert server().feed(frames) == got


def test_fragments_are_joined_and_control_frames_may_come_between():
    data = (w.encode_frame(w.OP_TEXT, "hé".encode(), masked=True, fin=False)
            + w.encode_frame(w.OP_PING, b"are you there", masked=True)
            + w.encode_frame(w.OP_CONTINUATION, b"llo", masked=True, fin=False)
            + w.encode_frame(w.OP_CONTINUATION, b"", masked=True))
    assert server().feed(data) == [(w.OP_PING, b"are you there"), (w.OP_TEXT, "héllo")]


def test_close_frames_round_trip_and_end_the_feed():
    data = w.encode_frame(w.OP_CLOSE, w.encode_close(4000, "bad frame"), masked=False)
    after = w.encode_frame(w.OP_BINARY, b"ignored", masked=False)
    reader = client()
    assert reader.feed(data + after) == [(w.OP_CLOSE, (4000, "bad frame"))]
    assert w.decode_close(b"") == (w.CLOSE_NO_STATUS, "")


def test_close_reasons_are_cut_to_fit_without_splitting_a_character():
    payload = w.encode_close(1000, "é" * 100)
    assert len(payload) <= w.MAX_CONTROL_PAYLOAD
    code, reason = w.decode_close(payload)
    assert code == 1000 and reason == "é" * 61


def test_interoperates_with_wsproto_frames():
    """Frames wsproto writes (as a client: masked) parse here, and ours parse there."""
    theirs = FrameProtocol(client=True, extensions=[])
    data = theirs.send_data(b"x" * 70_000, fin=True) + theirs.ping(b"p")
    assert server().feed(data) == [(w.OP_BINARY, b"x" * 70_000), (w.OP_PING, b"p")]
    reader = FrameProtocol(client=False, extensions=[])
    reader.receive_bytes(w.encode_frame(w.OP_BINARY, b"y" * 300, masked=True))
    (frame,) = list(reader.received_frames())
    assert frame.opcode is Opcode.BINARY and frame.payload == b"y" * 300


@pytest.mark.parametrize("n", [0, 3, 1023, 1024, 1025, 4099])
def test_mask_is_its_own_inverse_on_both_paths(n):
    key, data = os.urandom(4), os.urandom(n)
    masked = w.mask(key, data)
    assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert w.mask(key, masked) == data


def test_an_oversized_message_is_refused_on_its_header():
    header = w.frame_header(w.OP_BINARY, 10_000, masked=True) + b"\0\0\0\0"
    with pytest.raises(WebSocketError) as info:
        server(limit=1000).feed(header)  # not one payload byte sent
    assert info.value.code == w.CLOSE_TOO_BIG


def test_fragments_adding_up_past_the_limit_are_refused():
    reader = server(limit=1000)
    assert reader.feed(w.encode_frame(w.OP_BINARY, b"a" * 600, masked=True, fin=False)) == []
    with pytest.raises(WebSocketError) as info:
        reader.feed(w.encode_frame(w.OP_CONTINUATION, b"b" * 600, masked=True))
    assert info.value.code == w.CLOSE_TOO_BIG


def test_the_limit_can_be_raised_between_feeds():
    reader = server(limit=100)
    reader.max_message_size = 10_000
    assert reader.feed(w.encode_frame(w.OP_BINARY, b"z" * 5000, masked=True))


def _raw(first: int, payload: bytes = b"", masked: bool = True) -> bytes:
    key = b"\0\0\0\0"
    return bytes([first, (0x80 if masked else 0) | len(payload)]) + (key if masked else b"") \
        + payload


@pytest.mark.parametrize("data, code, words", [
    (_raw(0x80 | 0x40 | w.OP_BINARY, b"x"), 1002, "reserved bits"),
    (_raw(0x80 | 0x3), 1002, "unknown opcode"),
    (_raw(0x80 | w.OP_BINARY, b"x", masked=False), 1002, "unmasked frame from a client"),
    (w.frame_header(w.OP_PING, 126, masked=True), 1002, "control frame of 126"),
    (_raw(w.OP_PING, b"x"), 1002, "fragmented control frame"),
    (_raw(0x80 | w.OP_CONTINUATION, b"x"), 1002, "no message under way"),
    (_raw(w.OP_BINARY, b"x") + _raw(0x80 | w.OP_BINARY, b"y"), 1002, "before the last"),
    (_raw(0x80 | w.OP_CLOSE, b"\x03"), 1002, "1-byte payload"),
    (_raw(0x80 | w.OP_CLOSE, b"\x03\xed"), 1002, "close code 1005"),
    (_raw(0x80 | w.OP_CLOSE, b"\x13\x88"), 1002, "close code 5000"),
    (_raw(0x80 | w.OP_CLOSE, b"\x03\xe8\xff"), 1007, "not UTF-8"),
    (_raw(0x80 | w.OP_TEXT, b"\xc3"), 1007, "not UTF-8"),
])
def test_malformed_frames_get_their_close_code(data, code, words):
    with pytest.raises(WebSocketError) as info:
        server().feed(data)
    assert info.value.code == code
    assert words in str(info.value)


def test_a_masked_frame_from_the_server_is_refused():
    with pytest.raises(WebSocketError, match="masked frame from the server") as info:
        client().feed(w.encode_frame(w.OP_BINARY, b"x", masked=True))
    assert info.value.code == 1002


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8), st.booleans())
def test_arbitrary_bytes_give_events_or_websocket_error_only(chunks, is_client):
    reader = FrameReader(client=is_client, max_message_size=500)
    try:
        for chunk in chunks:
            for op, _ in reader.feed(chunk):
                assert op in (w.OP_BINARY, w.OP_TEXT, w.OP_PING, w.OP_PONG, w.OP_CLOSE)
                if op == w.OP_CLOSE:
                    return
    except WebSocketError as exc:
        assert exc.code in (1002, 1007, 1009)
