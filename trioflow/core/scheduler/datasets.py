"""Named datasets (``Client.publish_dataset``): data any client of the cluster can get
by name, whose futures the scheduler keeps alive until the dataset is deleted, also
after the client that published it has gone (as in dask).

The data is the publisher's pickle, opaque here; the keys of the futures inside it come
with it. Each key a dataset holds has the ``DATASETS`` holder in its ``wanted_by``, so
everything that keeps a wanted result keeps this one: it is not released, and it is
recomputed if its worker dies. ``dataset_holds`` counts the datasets holding a key, so
deleting one dataset releases only what no other holds. A client that gets a dataset
unpickles it and so holds the futures itself (``AcquireKeys``) before it uses them.
"""

from __future__ import annotations

from ... import protocol as p
from . import ops
from .records import DATASETS, Dataset
from .state import SchedulerState


def request(state: SchedulerState, peer_id: str, msg: p.DatasetRequest) -> None:
    """Handler of ``DatasetRequest``: publish, get, delete or list."""
    op, name = msg.op, msg.name
    if op == "list":
        reply = p.DatasetReply(msg.request_id, "ok", names=sorted(state.datasets))
    elif op == "get":
        found = state.datasets.get(name)
        reply = (p.DatasetReply(msg.request_id, "ok", blob=found.blob) if found is not None
                 else _missing(msg))
    elif op == "delete":
        found = state.datasets.pop(name, None)
        if found is None:
            reply = _missing(msg)
        else:
            ops.let_go_dataset(state, found)
            reply = p.DatasetReply(msg.request_id, "ok")
    elif op == "publish":
        reply = _publish(state, msg)
    else:
        reply = p.DatasetReply(msg.request_id, "invalid", f"unknown dataset operation {op!r}")
    state.send(peer_id, reply)


def _publish(state: SchedulerState, msg: p.DatasetRequest) -> p.DatasetReply:
    name = msg.name
    if not name:
        return p.DatasetReply(msg.request_id, "invalid", "a dataset needs a name")
    if name in state.datasets and not msg.override:
        return p.DatasetReply(msg.request_id, "exists", f"a dataset named {name!r} exists "
                              "already: unpublish it first, or publish with override=True")
    gone = sorted(k for k in set(msg.keys) if k not in state.tasks)
    if gone:
        return p.DatasetReply(msg.request_id, "invalid", f"dataset {name!r}: the futures "
                              f"{gone[:5]} were released already, so their results are gone")
    # hold the new keys before letting go of an overridden dataset's (they may overlap)
    dataset = Dataset(msg.blob, sorted(set(msg.keys)))
    holds = state.dataset_holds
    for key in dataset.keys:
        holds[key] = holds.get(key, 0) + 1
        state.tasks[key].wanted_by.add(DATASETS)
    old = state.datasets.get(name)
    state.datasets[name] = dataset
    if old is not None:
        ops.let_go_dataset(state, old)
    return p.DatasetReply(msg.request_id, "ok")


def _missing(msg: p.DatasetRequest) -> p.DatasetReply:
    return p.DatasetReply(msg.request_id, "missing", f"no dataset named {msg.name!r}")
