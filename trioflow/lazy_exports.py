"""Public names a package imports on first use (PEP 562), so that a process pays only for
what it touches: the scheduler and worker command lines never load the client, and
``import trioflow`` alone loads no submodule (start-up, issue 12).

Each package keeps its table (public name -> submodule) and writes the same imports
under ``TYPE_CHECKING``, which is what mypy and the layer test read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, table: Mapping[str, str],
                 namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package``: a name in ``table`` is imported
    from its submodule (relative to ``package``) on first use and then kept in
    ``namespace`` (the package's globals), so later lookups never come here.

    Raises (from the returned function):
        AttributeError: ``package`` has no such public name.
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module("." + module, package), name)
        namespace[name] = value
        return value

    return __getattr__
