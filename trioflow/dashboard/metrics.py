"""Prometheus metrics for ``/metrics``: a custom collector over the dashboard's snapshot.

Nothing is counted in the scheduler's hot path: each scrape takes one snapshot (the same
incremental ``Observer`` the pages use) and turns it into metric families. Each
dashboard has its own registry, so two schedulers in one process never share metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (imported where used: see the note in ``server``)
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

from .snapshot import LIVE_STATES, Observer

#: what ``/metrics`` answers with (the text exposition format)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SnapshotCollector:
    """Metric families read from ``observer.snapshot`` at scrape time."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer

    def describe(self) -> list[Metric]:
        return []  # families are only known at collect time; no checks at registration

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self.observer.snapshot(time.time())
        tasks = GaugeMetricFamily("trioflow_tasks", "Tasks the scheduler holds, by state",
                                  labels=["state"])
        for s in LIVE_STATES:
            tasks.add_metric([s], snap["tasks"].get(s, 0))
        yield tasks
        yield GaugeMetricFamily("trioflow_seceded_tasks", "Runs that gave their slot back",
                                value=snap["seceded"])
        yield GaugeMetricFamily("trioflow_workers", "Connected workers",
                                value=len(snap["workers"]))
        yield GaugeMetricFamily("trioflow_clients", "Connected clients", value=snap["clients"])
        yield CounterMetricFamily("trioflow_deadlocks", "DeadlockErrors raised",
                                  value=snap["deadlocks"])
        yield CounterMetricFamily("trioflow_runs_finished", "Runs that finished",
                                  value=snap["runs_total"])
        yield CounterMetricFamily("trioflow_result_bytes", "Bytes of results produced "
                                  "(pickled sizes reported by workers)",
                                  value=snap["result_bytes"])
        yield CounterMetricFamily("trioflow_runs_unseen", "Finished runs that left the "
                                  "scheduler's run log before the dashboard read them",
                                  value=snap["runs_missed"])
        yield CounterMetricFamily("trioflow_dashboard_cpu_seconds", "CPU time the dashboard "
                                  "spent in snapshots (in the scheduler's thread)",
                                  value=self.observer.cost)
        yield from _per_worker(snap["workers"])


def _per_worker(workers: list[dict[str, Any]]) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    families = {
        "slots": GaugeMetricFamily("trioflow_worker_slots", "Slots", labels=["worker"]),
        "busy": GaugeMetricFamily("trioflow_worker_slots_busy", "Slots running a task",
                                  labels=["worker"]),
        "blocked": GaugeMetricFamily("trioflow_worker_slots_blocked",
                                     "Slots held by a task blocked on others",
                                     labels=["worker"]),
        "seceded": GaugeMetricFamily("trioflow_worker_seceded", "Seceded runs (parked threads)",
                                     labels=["worker"]),
        "queued": GaugeMetricFamily("trioflow_worker_queued", "Runs queued on the worker",
                                    labels=["worker"]),
        "memory": GaugeMetricFamily("trioflow_worker_memory_bytes",
                                    "Bytes of results the worker holds", labels=["worker"]),
        "threads": GaugeMetricFamily("trioflow_worker_threads", "Task threads alive",
                                     labels=["worker"]),
        "overflow": GaugeMetricFamily("trioflow_worker_overflow_threads",
                                      "Threads started beyond the parked-thread cap",
                                      labels=["worker"]),
        "rss": GaugeMetricFamily("trioflow_worker_rss_bytes",
                                 "Resident memory of the worker's process", labels=["worker"]),
    }
    for w in workers:
        for field, family in families.items():
            value = w.get(field)
            if value is not None:
                family.add_metric([w["name"]], value)
    yield from families.values()


def metrics_text(registry: CollectorRegistry) -> bytes:
    """The exposition text of ``registry``."""
    from prometheus_client import generate_latest

    return generate_latest(registry)


def registry_for(observer: Observer) -> CollectorRegistry:
    """A registry holding only this dashboard's collector."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(observer))
    return registry
