"""Abstract resources (``GPU=2,MEM=16e9``): parsing and checking, for every caller.

A worker offers amounts of named resources (``trioflow-worker --resources``, the
``resources=`` option of local clusters); a task asks for amounts
(``submit(..., resources={"GPU": 1})``). Names are non-empty strings without ``=`` or
``,``; amounts are finite numbers >= 0. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def check_resources(resources: Any, what: str = "resources") -> dict[str, float]:
    """``resources`` as a plain ``{name: float}`` dict, or the reason it is not one.

    Raises:
        TypeError: not a mapping of str to numbers.
        ValueError: a negative, NaN or infinite amount, or an empty/odd name.
    """
    if resources is None:
        return {}
    if not isinstance(resources, Mapping):
        raise TypeError(f"{what} must be a mapping of names to amounts, like "
                        f"{{'GPU': 1}}; got {type(resources).__name__}")
    out: dict[str, float] = {}
    for name, amount in resources.items():
        if not isinstance(name, str):
            raise TypeError(f"{what}: names must be str, got {name!r}")
        if not name or "=" in name or "," in name or name != name.strip():
            raise ValueError(f"{what}: {name!r} is not a resource name (non-empty, no "
                             "'=', ',' or surrounding spaces)")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise TypeError(f"{what}[{name!r}] must be a number, got {type(amount).__name__}")
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"{what}[{name!r}] must be a finite amount >= 0, got {amount!r}")
        out[name] = float(amount)
    return out


def parse_resources(text: str) -> dict[str, float]:
    """``"GPU=2,MEM=16e9"`` as ``{"GPU": 2.0, "MEM": 16e9}`` ("" is none).

    Raises:
        ValueError: says which part is malformed.
    """
    out: dict[str, Any] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, amount = part.partition("=")
        if not sep:
            raise ValueError(f"resources: {part!r} is not NAME=AMOUNT (like GPU=2)")
        try:
            value = float(amount)
        except ValueError:
            raise ValueError(f"resources: the amount of {name.strip()!r} is not a number: "
                             f"{amount!r}") from None
        out[name.strip()] = value
    return check_resources(out)


def as_lists(resources: Mapping[str, float]) -> tuple[list[str], list[float]]:
    """The wire form: names and amounts, in the same order."""
    return list(resources), [float(v) for v in resources.values()]


def from_lists(names: list[str], amounts: list[float]) -> dict[str, float] | None:
    """The wire form back, or None if it is malformed (a peer's bug)."""
    if len(names) != len(amounts):
        return None
    try:
        return check_resources(dict(zip(names, amounts)))
    except (TypeError, ValueError):
        return None
