"""Hypothesis settings profiles for trioflow's fuzz tests, and for yours (imports Hypothesis).

Two profiles, registered by :func:`register_profiles`:

* ``"ci"`` — small and derandomized: the same examples on every run, so CI is
  reproducible and the whole ``fuzz/`` folder stays well under two minutes on two cores;
* ``"fuzz"`` — large and random: run it locally or on a schedule for as long as you like.

The active one is named by ``$TRIOFLOW_FUZZ_PROFILE`` (default ``"ci"``), or by
``pytest --hypothesis-profile=fuzz``. Tests opt in with ``@settings(fuzz_settings())``
(or ``fuzz_settings(max_examples=...)`` to scale one test), so loading the profile does
not change Hypothesis tests elsewhere in the suite.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

PROFILES = ("ci", "fuzz")
ENV_VAR = "TRIOFLOW_FUZZ_PROFILE"

#: examples per test in each profile, before a test's own scale factor
_EXAMPLES = {"ci": 60, "fuzz": 2_000}
_selected: list[str] = []


def register_profiles() -> None:
    """Register the ``ci`` and ``fuzz`` profiles with Hypothesis (idempotent)."""
    common: dict[str, Any] = {
        "deadline": None,  # simulations vary in length; time limits would flake
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    }
    settings.register_profile("ci", max_examples=_EXAMPLES["ci"], derandomize=True,
                              database=None, print_blob=True, **common)
    settings.register_profile("fuzz", max_examples=_EXAMPLES["fuzz"], derandomize=False,
                              print_blob=True, **common)


def select_profile(name: str | None = None) -> str:
    """Choose the active fuzz profile: ``name``, else ``$TRIOFLOW_FUZZ_PROFILE``, else ci.

    Raises:
        ValueError: not one of :data:`PROFILES`.
    """
    chosen = name or os.environ.get(ENV_VAR) or "ci"
    if chosen not in PROFILES:
        raise ValueError(f"fuzz profile must be one of {PROFILES}, got {chosen!r}")
    register_profiles()
    _selected[:] = [chosen]
    return chosen


def active_profile() -> str:
    """The fuzz profile in use (selecting the default if none was)."""
    return _selected[0] if _selected else select_profile()


def fuzz_settings(scale: float = 1.0, **overrides: Any) -> settings:
    """Settings from the active profile, with ``max_examples`` multiplied by ``scale``.

    Args:
        scale: how much heavier or lighter this test is than a typical one.
        overrides: any other ``hypothesis.settings`` field.
    """
    name = active_profile()
    examples = max(1, round(_EXAMPLES[name] * scale))
    overrides.setdefault("max_examples", examples)
    return settings(settings.get_profile(name), **overrides)
