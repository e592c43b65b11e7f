"""What the command lines share: exit codes, logging set-up, the garbage collector's
settings, secrets, TLS contexts, signals, and reading the exception groups Trio raises."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from typing import Any

import trio

from .. import config

logger = logging.getLogger(__name__)

EXIT_USAGE = 2
EXIT_INSECURE = 3


def address_or_usage_error(prog: str, text: str) -> str | None:
    """``text`` as a scheduler URL, or None after printing a one-line usage error
    (argparse's own errors print the whole usage first: too much for a typo)."""
    from ..net.addresses import scheduler_address

    try:
        return scheduler_address(text)
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None


def tune_gc() -> None:
    """Make the cyclic garbage collector cheaper in this process, a scheduler or worker
    that the CLI runs (never call it in a user's process: the collector's settings are
    the program's).

    What is alive now (modules, classes, functions: it lives as long as the process) is
    frozen out of every later collection, and the youngest generation is collected every
    ``config.GC_THRESHOLDS[0]`` allocations instead of 700, so the records of tasks that
    finish within milliseconds are mostly gone before any collection looks at them.
    """
    gc.freeze()
    gc.set_threshold(*config.GC_THRESHOLDS)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def read_token(path: str | None) -> str | None:
    if path:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
        if not token:
            raise SystemExit(f"error: token file {path} is empty")
        return token
    return os.environ.get("TRIOFLOW_TOKEN") or None


async def until_signal(nursery: trio.Nursery) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s, stopping", signal.Signals(signum).name)
            nursery.cancel_scope.cancel()
            return


def ssl_server_context(cert: str | None, key: str | None) -> Any:
    if not cert:
        return None
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def ssl_client_context(ca: str | None, insecure: bool = False) -> Any:
    import ssl

    ctx = ssl.create_default_context(cafile=ca)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def leaf(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of type ``kind`` in ``exc`` or its exception-group leaves."""
    if isinstance(exc, kind):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = leaf(inner, kind)
        if found is not None:
            return found
    return None


def first_leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside ``exc`` (for readable log lines)."""
    while getattr(exc, "exceptions", None):
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return exc


def only(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    """Whether ``exc`` (or every leaf of an exception group) is one of ``types``."""
    leaves = getattr(exc, "exceptions", None)
    if leaves is None:
        return isinstance(exc, types)
    return all(only(e, types) for e in leaves)
