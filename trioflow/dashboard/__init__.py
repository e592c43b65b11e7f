"""The scheduler's live dashboard: an HTTP server on its own port, in the scheduler's
Trio program, that reads the scheduler's records through a read-only snapshot.

* :mod:`.snapshot` — ``Observer``: what the pages and ``/metrics`` show, folded from the
  scheduler's state incrementally (finished runs from its run log) plus a full scan of
  the task table that is spaced out so it costs a bounded share of the time.
* :mod:`.metrics` — a Prometheus collector over the same snapshot.
* :mod:`.server` — ``Dashboard``: the Starlette app served by Hypercorn's Trio worker:
  the page, server-sent events, JSON and ``/metrics``, behind the scheduler's token.

Nothing here unpickles or changes the scheduler's state.
"""
