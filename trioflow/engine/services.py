"""The scheduler's services a session asks for: status, ``why``, run history,
replicas and restart.

Each call sends one request and awaits its one reply on the session's loop; the
request ids and the waiting live in the session's ``ReplyTable`` (``replies.py``), which
the coordination primitives share, so there is one place where answers are matched to
questions and one place that fails them all when the connection is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .. import protocol as p
from ..errors import WorkerLost
from .replies import ReplyTable

R = TypeVar("R")


class ServiceCalls:
    """What a client asks the scheduler about the cluster (on the session's loop).

    Args:
        post: the session's ordered, thread-safe send.
        replies: the session's table of requests waiting for their answer.

    Every call raises ``ClientClosedError`` when the session is closed or closes before
    the reply. Cancellation: the request is forgotten, and a late reply is dropped.
    """

    def __init__(self, post: Callable[..., None], replies: ReplyTable) -> None:
        self._post = post
        self._replies = replies

    async def status(self, with_keys: bool = False, min_workers: int = 0) -> p.StatusReply:
        """The scheduler's snapshot of the cluster (``with_keys``: also the keys each
        worker holds), taken once at least ``min_workers`` workers are connected."""
        return await self._request(p.StatusReply, p.StatusRequest, with_keys, min_workers)

    async def runs(self, since: int, limit: int) -> p.RunsReply:
        """Finished runs from number ``since`` on, at most ``limit`` (see ``RunsReply``)."""
        return await self._request(p.RunsReply, p.RunsRequest, since, limit)

    async def why(self, key: str) -> str:
        """The scheduler's explanation of why ``key`` has not finished."""
        return (await self._request(p.WhyReply, p.WhyRequest, key)).text

    async def replicate(self, keys: list[str], n: int, workers: list[str]) -> None:
        """Have ``n`` workers (0: all) among ``workers`` (empty: all) hold each key
        (``core/scheduler/replicas.py``); returns once they do.

        Raises:
            ValueError: an unknown worker, or a key without a result.
            WorkerLost: some copy could not be made (its worker or holder was lost).

        Cancellation: the request is forgotten; copies under way are still made.
        """
        reply = await self._request(p.ReplicateReply, p.ReplicateRequest, keys, n, workers)
        if reply.kind == "value":
            raise ValueError(reply.text)
        if reply.kind:
            raise WorkerLost(reply.text)

    async def restart(self) -> list[str]:
        """Have the scheduler cancel every task and restart every worker
        (``core/scheduler/restart.py``); the ids of the workers restarting. Returns
        when the scheduler has done so (this session's futures are cancelled by then:
        the cancellations come first on the connection); the workers come back later.

        Raises:
            RuntimeError: refused (a worker cannot be restarted); nothing was done.
        """
        reply = await self._request(p.RestartReply, p.RestartRequest)
        if reply.kind:
            raise RuntimeError(reply.text)
        return list(reply.workers)

    async def dataset(self, op: str, name: str = "", blob: bytes = b"",
                      keys: list[str] | None = None, override: bool = False) -> p.DatasetReply:
        """One operation on the named datasets (``trioflow/datasets.py`` checks the
        answer's status)."""
        return await self._request(p.DatasetReply, p.DatasetRequest, op, name, blob,
                                   list(keys or ()), override)

    async def plugin(self, op: str, name: str, blob: bytes = b"",
                     idempotent: bool = False) -> p.PluginReply:
        """Register or unregister a worker plugin (``core/scheduler/plugins.py``); a
        registration's reply comes once the workers connected now have set it up."""
        return await self._request(p.PluginReply, p.PluginRequest, op, name, blob, idempotent)

    async def metadata(self, op: str, keys: list[str], value: Any = None) -> p.MetadataReply:
        """Set or get a value of the scheduler's metadata tree
        (``core/scheduler/metadata.py``; ``trioflow/metadata.py`` reads the status)."""
        return await self._request(p.MetadataReply, p.MetadataRequest, op, list(keys), value)

    async def events(self, op: str, topics: list[str], msg: Any = None,
                     stamp: float = 0.0) -> p.EventReply:
        """Log an event to topics, or read topics' events (``core/scheduler/metadata.py``)."""
        return await self._request(p.EventReply, p.EventRequest, op, list(topics), msg, stamp)

    async def retry(self, keys: list[str]) -> list[str]:
        """Run these failed tasks again, with the failed tasks they depend on
        (``core/scheduler/retry.py``); the keys running again. The reply comes after
        their ``KeyRestarted``, so their futures are pending when this returns.

        Raises:
            ValueError: some keys cannot run again; says which and why (the others run
                again anyway).
        """
        reply = await self._request(p.RetryReply, p.RetryRequest, list(keys))
        if reply.refused:
            done = f"; running again: {reply.retried}" if reply.retried else ""
            raise ValueError(f"retry: these cannot run again:\n{reply.text}{done}")
        return list(reply.retried)

    async def _request(self, expect: type[R], kind: Any, *args: Any) -> R:
        """Send ``kind(request_id, *args)``; its reply, a message of type ``expect``."""
        pending = self._replies.open(True, expect)  # raises ClientClosedError once closed
        try:
            self._post(kind(pending.id, *args))
            await pending.wait_async()
        finally:
            if not pending.done:
                self._replies.forget(pending)
        if pending.error is not None:
            raise pending.error
        assert pending.reply is not None
        return pending.reply
