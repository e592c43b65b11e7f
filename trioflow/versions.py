"""trioflow's version, and what ``Client.get_versions`` reports of a process.

``__version__`` lives here and nowhere else: ``pyproject.toml`` reads it
(``[tool.setuptools.dynamic]``), ``trioflow.__version__`` re-exports it.
"""

from __future__ import annotations

import importlib
import struct
import sys
from typing import Any

__version__ = "0.3.0"

#: the packages every trioflow process reports (dask's list, in trioflow's terms)
PACKAGES = ("trio", "trio_websocket", "msgpack", "cloudpickle", "attrs")


def versions(packages: tuple[str, ...] = PACKAGES, imports: bool = False) -> dict[str, Any]:
    """This process's host and package versions, in the shape of dask's
    ``get_versions`` entries. Without ``imports``, only modules imported already are
    asked (a scheduler never imports cloudpickle, and this must not make it); a package
    that is not there reads None."""
    found: dict[str, Any] = {"python": ".".join(map(str, sys.version_info[:3])),
                             "trioflow": __version__}
    for name in packages:
        module = sys.modules.get(name)
        if module is None and imports:
            try:
                module = importlib.import_module(name)
            except Exception:  # (not installed, or broken: reported as None)
                module = None
        found[name] = getattr(module, "__version__", None) if module is not None else None
    if found.get("msgpack") is None and "msgpack" in sys.modules:
        found["msgpack"] = ".".join(map(str, getattr(sys.modules["msgpack"], "version", ())))
    import platform  # (here: a few ms at import, and only get_versions asks)

    host = {
        "python": sys.version.split()[0],
        "python-bits": struct.calcsize("P") * 8,
        "OS": platform.system(),
        "OS-release": platform.release(),
        "machine": platform.machine(),
        "byteorder": sys.byteorder,
    }
    return {"host": host, "packages": found}


#: the packages whose versions must agree between clients and workers (pickles made by
#: one are loaded by the other); the scheduler only needs the same trioflow
MUST_MATCH = ("python", "trioflow", "cloudpickle", "msgpack")


def mismatches(found: dict[str, Any]) -> list[str]:
    """What disagrees in a ``get_versions`` answer, one line each (empty: nothing)."""
    client = found["client"]["packages"]
    lines = []
    for name in MUST_MATCH:
        mine = client.get(name)
        where = {f"worker {w}": v["packages"].get(name) for w, v in found["workers"].items()}
        if name == "trioflow":
            where["the scheduler"] = found["scheduler"].get("packages", {}).get(name)
        other = {k: v for k, v in where.items() if v != mine}
        if other:
            lines.append(f"{name}: the client has {mine}, " + ", ".join(
                f"{k} has {v}" for k, v in sorted(other.items())))
    return lines
