"""Command lines: ``trioflow-scheduler``, ``trioflow-worker`` and ``trioflow``
(``status``, ``why``).

Logs go to stderr (configured here, never by the library). Secrets come from files or
the ``TRIOFLOW_TOKEN`` environment variable, never from the command line, where other
users could read them in the process list. SIGINT and SIGTERM stop a node cleanly.

Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage (argparse), 3 refused to start
for security reasons.

One module per command: ``scheduler``, ``worker`` and ``tools`` (``trioflow status``,
``trioflow why``), and ``common`` for what they share. Trioflow modules are imported
inside the entry points, not at the top, so ``--help`` and usage errors stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .scheduler import scheduler_main
    from .tools import format_status, main
    from .worker import worker_main

__all__ = ["format_status", "main", "scheduler_main", "worker_main"]

#: entry point -> its module, imported on first use (PEP 562) so that the
#: ``trioflow-scheduler`` script does not load the worker's modules, nor the reverse
_LAZY = {"format_status": "tools", "main": "tools", "scheduler_main": "scheduler",
         "worker_main": "worker"}


__getattr__ = lazy_exports(__name__, _LAZY, globals())
