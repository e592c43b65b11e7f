"""The wire: attrs messages (:mod:`.messages`) in a versioned msgpack envelope (:mod:`.codec`).

Nothing here imports trio or pickle: the protocol is plain data, shared by the
scheduler (which never unpickles), workers and clients.
"""

from .codec import (
    CLOSE_AUTH_FAILED,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REPLACED,
    CLOSE_SHUTDOWN,
    CLOSE_VERSION_MISMATCH,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    choose_version,
    decode_frame,
    encode_frame,
)
from .messages import *  # the message classes are the protocol's vocabulary
from .services import *
