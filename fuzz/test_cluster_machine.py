"""The cluster state machine (trioflow.testing.machine): Hypothesis picks every step —
submissions, deliveries (any batch of a link), task steps, workers joining and leaving —
and checks slot conservation, single placement, monotonic run ids and deadlock ground
truth throughout, then drains the world and checks every root ended as allowed."""

from __future__ import annotations

from trioflow.testing.machine import ClusterMachine
from trioflow.testing.profiles import fuzz_settings
from trioflow.testing.strategies import programs


class DeepClusterMachine(ClusterMachine):
    """Deeper programs, more of them at once."""

    program_strategy = programs(max_depth=3, max_fanout=2)
    max_roots = 4


TestClusterMachine = ClusterMachine.TestCase
TestClusterMachine.settings = fuzz_settings(scale=5, stateful_step_count=80)

TestDeepClusterMachine = DeepClusterMachine.TestCase
TestDeepClusterMachine.settings = fuzz_settings(scale=3, stateful_step_count=150)

from trioflow.testing.machine import PrimitiveClusterMachine  # noqa: E402

TestPrimitiveClusterMachine = PrimitiveClusterMachine.TestCase
TestPrimitiveClusterMachine.settings = fuzz_settings(scale=3, stateful_step_count=80)
