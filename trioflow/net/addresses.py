"""Scheduler addresses as people write them, and connection failures in words.

``scheduler_address`` turns what a user typed into the ``ws://`` / ``wss://`` URL the
connection opens, accepting the forms that mean one thing (``host:port`` and dask's
``tcp://host:port`` are ``ws://host:port``; ``tls://host:port`` is ``wss://``), and
answering anything else with an ``AddressError`` that gives the right form.

``connect_failure`` names why a connection attempt failed, one message per cause:
nothing listening, a name that does not resolve, a TLS failure, an HTTP server that is
not a trioflow scheduler, a peer that closed without answering, a timeout.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import urllib.parse

from ..errors import AddressError

#: schemes that mean one thing here, and what they become
_SCHEMES = {"ws": "ws", "wss": "wss", "tcp": "ws", "tls": "wss"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 maybe in brackets) is this machine:
    listening there needs no token."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_EXAMPLE = "ws://HOST:PORT (as trioflow-scheduler printed it, e.g. ws://127.0.0.1:8786)"


def scheduler_address(text: str) -> str:
    """The ``ws://`` or ``wss://`` URL for ``text``.

    Raises:
        AddressError: ``text`` is not an address, or one that could mean several things.
    """
    raw = text.strip()
    if not raw:
        raise AddressError(f"empty scheduler address: give {_EXAMPLE}")
    if "://" not in raw:
        if raw.count(":") == 1 or (raw.startswith("[") and "]:" in raw):
            raw = "ws://" + raw  # host:port
        else:
            raise AddressError(f"{text!r} is not a scheduler address: give {_EXAMPLE}")
    url = urllib.parse.urlsplit(raw)
    scheme = _SCHEMES.get(url.scheme.lower())
    if scheme is None:
        hint = ("ws:// (or wss:// with TLS): trioflow speaks WebSocket"
                if url.scheme.lower() in ("http", "https") else _EXAMPLE)
        raise AddressError(f"{text!r}: trioflow does not speak {url.scheme}://; use {hint}")
    try:
        port = url.port
    except ValueError:
        raise AddressError(f"{text!r} has no valid port: give {_EXAMPLE}") from None
    if not url.hostname:
        raise AddressError(f"{text!r} has no host: give {_EXAMPLE}")
    if port is None and url.scheme.lower() in ("tcp", "tls"):
        raise AddressError(f"{text!r} has no port: give {_EXAMPLE}")
    rest = url.path + (f"?{url.query}" if url.query else "")
    return f"{scheme}://{url.netloc}{rest}"


def connect_failure(address: str, exc: BaseException) -> str:
    """Why connecting to ``address`` failed, in one sentence that says what to check."""
    host = urllib.parse.urlsplit(address).hostname or address
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return (f"nothing is listening at {address}: is trioflow-scheduler running, "
                    "and is this the address it printed?")
        if isinstance(cause, socket.gaierror):
            return (f"cannot resolve the host {host!r} of {address} ({cause.strerror}): "
                    "check the name, or use an IP address")
        if isinstance(cause, ssl.SSLError):
            return (f"TLS handshake with {address} failed ({cause.reason or cause}): does the "
                    "scheduler serve wss:// (--tls-cert)? If it printed ws://, use ws://")
        status = getattr(cause, "status_code", None)
        if isinstance(status, int):
            return (f"{address} answered HTTP {status} instead of a WebSocket upgrade: it "
                    "is not a trioflow scheduler (check the port)")
    name = type(exc).__name__
    if name == "TooSlowError" or "timed out" in str(exc):
        return (f"no answer from {address} within the connect timeout: is the host up and "
                "the port open (a firewall that drops packets looks like this)?")
    if name in ("HandshakeError", "ConnectionClosed", "BrokenResourceError"):
        return (f"{address} closed the connection without answering the WebSocket upgrade: "
                "it is not a trioflow scheduler (a worker's data port?), or it serves wss:// "
                "(TLS) and this address says ws://")
    return f"cannot connect to {address}: {exc!r}"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc``, its causes and contexts, and the leaves of exception groups among them."""
    out: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e in out:
            continue
        out.append(e)
        todo.extend(getattr(e, "exceptions", ()))
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                todo.append(nxt)
    return out
