"""``AsyncClient`` in an asyncio program: ``async with trioflow.AsyncClient(addr)``
works under ``asyncio.run`` as under ``trio.run``.

Under asyncio the client's Trio loop runs in a background thread (a blocking
``Client`` connected to the same address), and every wait is bridged to the asyncio
loop (``engine/asyncio_waits.py`` says how, and why not Trio's guest mode). Under Trio
nothing changes: the client stays Trio-native, on the caller's loop.

``submit``, ``map``, ``cancel``, ``scatter``, ``compute`` and ``persist`` never wait
and are the same calls. ``await future``, ``await client.gather(...)`` and ``async for
f in as_completed(...)`` wait on the asyncio loop; the other calls that ask the
scheduler (``status``, ``nthreads``, ...) run the blocking client's call in asyncio's
default executor.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from .config import CLIENT_CALL_TIMEOUT
from .engine import asyncio_waits
from .engine.futures import Future, task_error
from .engine.keys import ERRED


class AsyncioSupport:
    """What ``AsyncClient`` does differently when entered from asyncio."""

    #: the blocking client whose background Trio loop serves this one (asyncio only)
    _background: Any = None

    async def _enter_asyncio(self, blocking_client: Callable[..., Any], address: str,
                             **kwargs: Any) -> None:
        loop = asyncio.get_running_loop()
        client = await loop.run_in_executor(
            None, functools.partial(blocking_client, address, **kwargs))
        self._background = client
        self._session = client._session

    async def _close_asyncio(self) -> None:
        client, self._background = self._background, None
        if client is not None:
            await asyncio.get_running_loop().run_in_executor(None, client.close)

    async def _call_blocking(self, method: str, *args: Any) -> Any:
        """Run a blocking client call in the default executor."""
        fn = getattr(self._background, method)
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _on_trio(self, afn: Callable[[], Awaitable[Any]]) -> Any:
        """``await afn()`` on the client's Trio loop: here under Trio; under asyncio on
        the background loop, waited for in the default executor."""
        if self._background is None:
            return await afn()
        return await asyncio.get_running_loop().run_in_executor(
            None, self._background._on_loop, afn, CLIENT_CALL_TIMEOUT)

    async def _gather_asyncio(self, found: list[Future[Any]], errors: str) -> dict[str, Any]:
        session = self._session
        states = [f._state for f in found]
        await asyncio_waits.wait_states(session, states)
        values: dict[str, Any] = {}
        for f in found:
            if f._state.status is ERRED:
                if errors == "raise":
                    raise task_error(f._state)  # here: no frames of trioflow's below
                continue
            values[f.key] = await asyncio_waits.value(session, f._state)
        return values

    _session: Any
