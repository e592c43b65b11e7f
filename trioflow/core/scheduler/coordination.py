"""Handlers of the coordination primitives: Lock, Semaphore, Queue, Event, Variable.

Their state lives here, on the scheduler, as opaque bytes (items and values are
pickled by the client side and never unpickled here). Each ``PrimitiveRequest`` gets
exactly one ``PrimitiveReply``: at once when it can be served (or has ``nowait``), or
later, when what it waits for happens, when its sender cancels it (a timeout), when
the deadlock rule fails it, or never if its sender leaves (nobody to tell).

Rules:

* A Lock is a Semaphore of one lease. A lease belongs to the client-side object that
  took it (``holder``) on one connection, and to the run that took it, if a task did;
  it lives until released or until that connection goes (a worker that dies releases
  every lease its tasks held, a client that disconnects its own). A holder whose
  connection stays silent for the peer timeout is dropped by the shell, which is how
  leases expire.
* Waiters are served oldest first: a new acquire never overtakes an older one.
* A wait made by a running task (``run_key``) is recorded in the run's ``blocked_on``
  (as ``PrimitiveWait.marker``, which is never a task key), so slot accounting,
  placement and stealing treat a run blocked on a primitive like one blocked on keys.
  A waiting task keeps its slot (it has seceded if it holds none). The deadlock rule
  (:mod:`.deadlock`) decides whether such a wait can still end.
* A client (not a worker) that holds live ``Queue``/``Event``/``Variable`` objects tells
  us (``PrimitiveHandles``): while it does, it may still put or set, so waits on that
  primitive never count as deadlocked.
* Requests from a run that is no longer current are served to nobody: they are dropped.
"""

from __future__ import annotations

from ... import protocol as p
from . import resources
from .records import Lease, PrimitiveRecord, PrimitiveWait
from .state import SchedulerState
from .waitlines import block, current_run, end_wait
from .waitlines import reply as _reply

#: the operations of each kind; anything else is answered with status "invalid"
OPS: dict[str, frozenset[str]] = {
    "lock": frozenset({"acquire", "release", "value"}),
    "semaphore": frozenset({"acquire", "release", "value"}),
    "queue": frozenset({"create", "put", "get", "putback", "qsize"}),
    "event": frozenset({"set", "clear", "wait", "is_set"}),
    "variable": frozenset({"set", "get", "delete"}),
    "resources": frozenset({"acquire"}),  # a seceded run takes its resources back
}

def _stale(state: SchedulerState, wait: PrimitiveWait) -> bool:
    req = wait.request
    return bool(req.run_key) and current_run(state, wait.peer_id, req.run_key, req.run_id) is None


def _record(state: SchedulerState, kind: str, name: str, limit: int) -> PrimitiveRecord:
    rec = state.primitives.get((kind, name))
    if rec is None:
        rec = state.primitives[(kind, name)] = PrimitiveRecord(kind, name, limit)
    return rec


def _maybe_drop(state: SchedulerState, rec: PrimitiveRecord) -> None:
    """Forget a primitive nothing refers to (a name used once costs nothing forever)."""
    if not (rec.leases or rec.items or rec.value is not None or rec.is_set or rec.waits
            or rec.handles or (rec.kind == "queue" and rec.limit)):
        state.primitives.pop((rec.kind, rec.name), None)


# ----------------------------------------------------------------------- requests


def request(state: SchedulerState, peer_id: str, msg: p.PrimitiveRequest) -> None:
    """Serve ``msg`` now, or record it as a wait."""
    if msg.op not in OPS.get(msg.kind, ()):
        _reply(state, peer_id, msg.request_id, "invalid",
               text=f"unknown operation {msg.op!r} on a {msg.kind!r}")
        return
    if msg.kind == "resources":
        _resources_request(state, peer_id, msg)
        return
    limit = 1 if msg.kind == "lock" else max(msg.number, 0)
    rec = _record(state, msg.kind, msg.name, limit)
    if msg.kind == "semaphore" and msg.op == "acquire" and rec.limit != limit:
        if rec.leases or rec.waits:
            _reply(state, peer_id, msg.request_id, "invalid", text=(
                f"Semaphore {msg.name!r} exists with max_leases={rec.limit}; "
                f"this one asks for {limit}: use one max_leases per name"))
            return
        rec.limit = limit
    wait = PrimitiveWait(peer_id, msg)
    if _immediate(state, rec, wait):
        _pump(state, rec)
        _maybe_drop(state, rec)
        return
    # a wait: served now unless older waits of the same kind are ahead of it
    if not _older_waits(rec, msg.op) and _serve(state, rec, wait):
        _pump(state, rec)
        _maybe_drop(state, rec)
        return
    if msg.nowait:
        _reply(state, peer_id, msg.request_id, "timeout")
        _maybe_drop(state, rec)
        return
    rec.waits.append(wait)
    run = current_run(state, peer_id, msg.run_key, msg.run_id)
    if run is not None:
        block(state, run, wait)


def _resources_request(state: SchedulerState, peer_id: str, msg: p.PrimitiveRequest) -> None:
    """A seceded run asks for its resources back before it rejoins: served when its
    worker has them free, oldest first and before new tasks take them."""
    run = current_run(state, peer_id, msg.run_key, msg.run_id)
    if run is None or run.resources is None or run.holds_resources:
        _reply(state, peer_id, msg.request_id)  # nothing to take (or a stale run)
        return
    worker = state.workers[peer_id]
    if ("resources", peer_id) not in state.primitives and resources.fits(worker, run.resources):
        resources.take(worker, run)
        _reply(state, peer_id, msg.request_id)
        return
    rec = _record(state, "resources", peer_id, 0)
    wait = PrimitiveWait(peer_id, msg)
    rec.waits.append(wait)
    block(state, run, wait)


def pump_resources(state: SchedulerState) -> None:
    """Once per event, before placement: give freed resources to the runs waiting to
    rejoin with them, oldest first on each worker."""
    recs = [r for r in state.primitives.values() if r.kind == "resources"]
    for rec in recs:
        worker = state.workers.get(rec.name)
        for wait in list(rec.waits):
            run = current_run(state, wait.peer_id, wait.request.run_key, wait.request.run_id)
            if run is None or run.resources is None or worker is None:
                end_wait(state, rec, wait)  # stale: nobody to give them to
                continue
            if not resources.fits(worker, run.resources):
                break  # oldest first: no overtaking
            resources.take(worker, run)
            end_wait(state, rec, wait)
            _reply(state, wait.peer_id, wait.request.request_id)
        _maybe_drop(state, rec)


def _older_waits(rec: PrimitiveRecord, op: str) -> bool:
    return any(w.request.op == op for w in rec.waits)


def _immediate(state: SchedulerState, rec: PrimitiveRecord, wait: PrimitiveWait) -> bool:
    """Carry out an operation that never waits; False if ``wait`` is one that may."""
    req, peer_id = wait.request, wait.peer_id
    op, rid = req.op, req.request_id
    if op == "release":
        for i, lease in enumerate(rec.leases):
            if lease.peer_id == peer_id and lease.holder == req.holder:
                del rec.leases[i]
                _reply(state, peer_id, rid, number=1)
                break
        else:
            _reply(state, peer_id, rid, "error", text=(
                f"{rec.title} released too often: this object holds "
                "no lease (it was never acquired, already released, or its lease "
                "expired with its connection)"))
        state.deadlock_dirty = True
    elif op == "value":
        _reply(state, peer_id, rid, number=len(rec.leases))
    elif op == "qsize":
        _reply(state, peer_id, rid, number=len(rec.items))
    elif op == "create":
        if not rec.limit:
            rec.limit = max(req.number, 0)
        _reply(state, peer_id, rid)
    elif op == "putback":  # a get whose taker was cancelled: the item goes back in front
        if req.value is not None:
            rec.items.insert(0, req.value)
        _reply(state, peer_id, rid)
    elif op == "get" and rec.kind == "queue" and req.nowait and req.number:  # get(batch=True): all there is now
        items, rec.items = rec.items, []
        _reply(state, peer_id, rid, values=items)
    elif op == "set" and rec.kind == "event":
        rec.is_set = True
        _reply(state, peer_id, rid)
    elif op == "clear":
        rec.is_set = False
        _reply(state, peer_id, rid)
    elif op == "is_set":
        _reply(state, peer_id, rid, number=int(rec.is_set))
    elif op == "set":  # a Variable
        rec.value = req.value
        _reply(state, peer_id, rid)
    elif op == "delete":
        rec.value = None
        _reply(state, peer_id, rid)
    else:
        return False
    return True


def _serve(state: SchedulerState, rec: PrimitiveRecord, wait: PrimitiveWait) -> bool:
    """Serve a waiting kind of request if it can be served now (and reply)."""
    req, peer_id = wait.request, wait.peer_id
    op = req.op
    if op == "acquire":
        if len(rec.leases) >= rec.limit:
            return False
        run = current_run(state, peer_id, req.run_key, req.run_id)
        rec.leases.append(Lease(peer_id, req.holder, run.key if run else "",
                                run.run_id if run else 0))
        _reply(state, peer_id, req.request_id, number=1)
    elif rec.kind == "queue" and op == "get":
        if not rec.items:
            return False
        _reply(state, peer_id, req.request_id, values=[rec.items.pop(0)])
    elif rec.kind == "queue":  # a put
        if rec.limit and len(rec.items) >= rec.limit:
            return False
        rec.items.append(req.value if req.value is not None else b"")
        _reply(state, peer_id, req.request_id)
    elif rec.kind == "event":  # a wait
        if not rec.is_set:
            return False
        _reply(state, peer_id, req.request_id, number=1)
    else:  # a Variable's get
        if rec.value is None:
            return False
        _reply(state, peer_id, req.request_id, values=[rec.value])
    state.deadlock_dirty = True
    return True


def _pump(state: SchedulerState, rec: PrimitiveRecord) -> None:
    """Serve every wait that can be served now, oldest first (an acquire that cannot be
    served stops later acquires: no overtaking), until nothing changes."""
    progress = True
    while progress and rec.waits:
        progress = False
        blocked_ops: set[str] = set()
        for wait in list(rec.waits):
            if _stale(state, wait):
                end_wait(state, rec, wait)
                progress = True
                continue
            op = wait.request.op
            if op in blocked_ops:
                continue
            if _serve(state, rec, wait):
                end_wait(state, rec, wait)
                progress = True  # a get may make room for a put, and the reverse
            else:
                blocked_ops.add(op)


def cancel(state: SchedulerState, peer_id: str, msg: p.PrimitiveCancel) -> None:
    """The sender gave up waiting (timeout, cancellation): answer "timeout" if it still
    waits; if it was served meanwhile, that answer is on its way already."""
    for rec in list(state.primitives.values()):
        for wait in rec.waits:
            if wait.peer_id == peer_id and wait.request.request_id == msg.request_id:
                end_wait(state, rec, wait)
                _reply(state, peer_id, msg.request_id, "timeout")
                _pump(state, rec)  # (an acquire ahead of others left the line)
                _maybe_drop(state, rec)
                return


def handles(state: SchedulerState, peer_id: str, msg: p.PrimitiveHandles) -> None:
    """A client's count of live objects for a primitive changed. Workers' objects are
    not counted: their tasks are runs, which the deadlock rule sees already."""
    if msg.kind not in OPS or peer_id in state.workers:
        return
    rec = _record(state, msg.kind, msg.name, 0)
    count = rec.handles.get(peer_id, 0) + msg.delta
    if count > 0:
        rec.handles[peer_id] = count
    else:
        rec.handles.pop(peer_id, None)
        state.deadlock_dirty = True
    _maybe_drop(state, rec)


def peer_left(state: SchedulerState, peer_id: str) -> None:
    """``peer_id`` is gone (after ``peers.peer_left``): its leases are released, its
    waits and objects forgotten, and whoever waited behind it is served."""
    for rec in list(state.primitives.values()):
        before = len(rec.leases) + len(rec.waits) + len(rec.handles)
        rec.leases = [lease for lease in rec.leases if lease.peer_id != peer_id]
        for wait in [w for w in rec.waits if w.peer_id == peer_id]:
            end_wait(state, rec, wait)
        rec.handles.pop(peer_id, None)
        if len(rec.leases) + len(rec.waits) + len(rec.handles) != before:
            state.deadlock_dirty = True
            _pump(state, rec)
        _maybe_drop(state, rec)
