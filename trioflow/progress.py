"""``trioflow.progress(futures)``: a progress bar that returns when the futures are done.

The bar is tqdm's: small, with no dependencies of its own, and ``tqdm.auto`` draws a
notebook widget under Jupyter (when ipywidgets is installed) and text elsewhere. rich
draws finer bars, but pulls in more and wants to own the terminal; a bar beside the
user's own output is all this needs.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import IO, Any

import trio
from tqdm import tqdm as text_bar
from tqdm.auto import tqdm as auto_bar

from .engine.as_completed import as_completed
from .engine.asyncio_waits import running_asyncio
from .engine.futures import Future


def _in_trio() -> bool:
    """Whether this thread is inside a Trio task (then the caller awaits)."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


class Progress:
    """What ``progress`` returns: awaitable; ``await`` it in async code.

    In sync code ``progress`` has already waited when it returns this, and awaiting it
    returns at once.

    Cancellation: cancelling the ``await`` closes the bar; the futures are untouched.
    """

    def __init__(self, futures: list[Future[Any]], file: IO[str] | None, desc: str) -> None:
        self.futures = futures
        self.file = file
        self.desc = desc
        self.done = False
        #: futures that failed (shown beside the bar)
        self.erred = 0

    def _bar(self) -> Any:
        # a given file means text there (a notebook widget ignores files)
        make = auto_bar if self.file is None else text_bar
        return make(total=len(self.futures), desc=self.desc, unit="task", file=self.file,
                    dynamic_ncols=self.file is None)

    def wait(self) -> None:
        """Block until every future is done, moving the bar as each one finishes."""
        with self._bar() as bar:
            for f in as_completed(self.futures):
                self._step(bar, f)
        self.done = True

    async def wait_async(self) -> None:
        with self._bar() as bar:
            async for f in as_completed(self.futures):
                self._step(bar, f)
        self.done = True

    def _step(self, bar: Any, future: Future[Any]) -> None:
        if future.status == "error":
            self.erred += 1
            bar.set_postfix(erred=self.erred, refresh=False)
        bar.update(1)

    def __await__(self) -> Generator[Any, None, None]:
        if self.done:
            return
        yield from self.wait_async().__await__()

    def __repr__(self) -> str:
        state = "done" if self.done else "waiting"
        return f"<Progress {len(self.futures)} futures, {state}>"


def progress(futures: Future[Any] | Iterable[Future[Any]], file: IO[str] | None = None, *,
             desc: str = "tasks") -> Progress:
    """Show a progress bar until ``futures`` are done (finished, failed or cancelled).

    In sync code this blocks and returns once they are all done. In async code (inside
    a Trio task) it returns at once: ``await trioflow.progress(futures)``. Failed
    futures count as done; their errors stay with them (``gather`` raises them).

    Args:
        futures: a Future or an iterable of them.
        file: where to draw the bar (default: stderr, or a widget in a notebook).
        desc: the bar's label.

    Raises:
        TypeError: something other than Futures was given.
    """
    fs = [futures] if isinstance(futures, Future) else list(futures)
    bad = [type(f).__name__ for f in fs if not isinstance(f, Future)]
    if bad:
        raise TypeError(f"progress() takes Futures, got {', '.join(sorted(set(bad)))}")
    job = Progress(fs, file, desc)
    if not _in_trio() and not running_asyncio():  # asyncio awaits it too (issue 14)
        job.wait()
    return job
