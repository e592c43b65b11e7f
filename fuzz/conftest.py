"""Settings for the fuzz suite: Hypothesis profiles "ci" (default) and "fuzz".

Select with ``TRIOFLOW_FUZZ_PROFILE=fuzz`` or ``pytest fuzz --hypothesis-profile=fuzz``
(see fuzz/README.md). Tests here take their settings from
``trioflow.testing.profiles.fuzz_settings``, so the profile applies to fuzz/ only,
unless ``--hypothesis-profile`` is given, which Hypothesis applies everywhere.
"""

from __future__ import annotations

from trioflow.testing.profiles import PROFILES, register_profiles, select_profile

register_profiles()


def pytest_configure(config):
    chosen = config.getoption("hypothesis_profile", default=None)
    select_profile(chosen if chosen in PROFILES else None)


def pytest_report_header(config):
    from trioflow.testing.profiles import active_profile

    return f"trioflow fuzz profile: {active_profile()}"
