"""The handshake of all three roles: the Hello a peer sends, the Welcome it expects,
and what a refusal's close code means.

A client or a worker opens a connection, sends one ``Hello`` (its role, name,
protocol versions and token), and reads the ``Welcome`` (its peer id and the
scheduler's inline limit). The scheduler checks the Hello (``check_hello``) and
answers, or closes the connection with the refusing error's ``close_code``, which the
peer turns back into that error (``error_for_close``). Like wsproto's handshake
phase, this is separate from the framed traffic that follows.
"""

from __future__ import annotations

import hmac
import os

from trio_websocket import ConnectionClosed

from .. import protocol as p
from ..core import resource_spec
from ..errors import (
    AuthenticationError,
    ClientClosedError,
    ProtocolError,
    ProtocolVersionError,
    RemoteProtocolError,
    TrioflowError,
)
from .connection import welcome_deadline
from .local_link import AnyConnection

#: close codes that stand for an error the peer should raise as such
_ERRORS_BY_CODE: dict[int, type[TrioflowError]] = {
    cls.close_code: cls for cls in (AuthenticationError, ProtocolVersionError)
}

ROLES = ("client", "worker")


def hello(role: str, name: str, token: str | None, *, nthreads: int = 0,
          data_address: str = "", resources: dict[str, float] | None = None,
          restartable: bool = False) -> p.Hello:
    """The first message of a ``role`` peer (a worker's ``resources``: what it offers)."""
    names, amounts = resource_spec.as_lists(resources or {})
    return p.Hello(role, name, list(p.SUPPORTED_VERSIONS), token or "", nthreads,
                   data_address, os.getpid() if role == "worker" else 0, names, amounts,
                   restartable)


def check_hello(msg: p.Hello, token: str | None) -> int:
    """Check a peer's Hello against our ``token``; the protocol version to speak.

    Raises:
        ProtocolVersionError: no version in common.
        RemoteProtocolError: an unknown role.
        AuthenticationError: a wrong or missing token (compared in constant time).
    """
    version = p.choose_version(msg.versions)
    if msg.role not in ROLES:
        raise RemoteProtocolError(f"unknown role {msg.role!r}: a scheduler serves the roles {list(ROLES)}")
    if resource_spec.from_lists(msg.resource_names, msg.resource_amounts) is None:
        raise RemoteProtocolError("malformed resources in Hello")
    if token is not None and not hmac.compare_digest(msg.token.encode(), token.encode()):
        raise AuthenticationError("wrong or missing token (set TRIOFLOW_TOKEN or --token-file)")
    return version


def close_code(exc: BaseException) -> int:
    """The close code a connection refused for ``exc`` gets."""
    code = getattr(exc, "close_code", None)
    return code if isinstance(code, int) else ProtocolError.close_code


def error_for_close(code: int, text: str) -> TrioflowError:
    """The error a peer raises when the scheduler closed its connection with ``code``."""
    cls = _ERRORS_BY_CODE.get(code, ClientClosedError)
    return cls(text)


async def expect_welcome(conn: AnyConnection) -> p.Welcome:
    """Read the scheduler's answer to our Hello.

    Raises:
        AuthenticationError, ProtocolVersionError: the scheduler refused us for that.
        ClientClosedError: it closed the connection for another reason.
        RemoteProtocolError: it answered with something other than a Welcome.
        ClientClosedError: no answer within what is left of the connection attempt.
    """
    try:
        with welcome_deadline(conn):
            messages = await conn.receive()
    except ConnectionClosed as exc:
        reason = exc.reason
        if reason is None:
            raise ClientClosedError("the scheduler closed the connection") from None
        text = f"the scheduler refused us: {reason.reason or reason.name} (code {reason.code})"
        raise error_for_close(reason.code, text) from None
    if not messages or not isinstance(messages[0], p.Welcome):
        raise RemoteProtocolError("the scheduler did not answer with Welcome")
    # work may share the Welcome's frame (tasks waiting for a worker to join)
    conn.unread(messages[1:])
    return messages[0]
