"""What trioflow relies on in trio-websocket's internals to raise an authenticated peer's
limits: if an upgrade renames these, this fails instead of the limits silently
staying small (or, worse, large)."""

import inspect

from trio_websocket import WebSocketConnection, WebSocketServer

from trioflow.net.handshake_limits import peer_address


def test_trio_websocket_reads_its_limits_from_these_attributes():
    source = inspect.getsource(WebSocketConnection)
    # checked per chunk in _handle_message_event, read per receive in _reader_task
    assert "self._message_size > self._max_message_size" in source
    assert "receive_some(self._receive_buffer_size)" in source
    for name in ("_reader_task", "_get_request"):
        assert callable(getattr(WebSocketConnection, name))
    assert "self._open_handshake = trio.Event()" in source  # set at the 101 answer
    server = inspect.getsource(WebSocketServer.__init__)
    for name in ("_message_queue_size", "_max_message_size", "_connect_timeout",
                 "_disconnect_timeout", "_handler"):
        assert f"self.{name}" in server


def test_peer_address_never_raises():
    class Broken:
        @property
        def socket(self):
            raise OSError(107, "Transport endpoint is not connected")

    assert peer_address(Broken()) == "?"
    assert peer_address(object()) == "?"
