"""Properties of the scheduler's primitives under any sequence of requests from several
clients (Hypothesis): every request is answered at most once, a Semaphore never has
more leases than it allows and nobody waits while a lease is free, a Queue never loses
or duplicates an item and nobody waits to get while it holds one, also when clients
leave (taking their leases and waits with them) and cancel."""

from hypothesis import given, settings
from hypothesis import strategies as st

from trioflow import protocol as p
from trioflow.core.events import MessagesReceived, PeerLeft
from trioflow.core.scheduler import Scheduler

from .test_scheduler_core import join

PEERS = ("a", "b", "c")

ops = st.lists(st.one_of(
    st.tuples(st.just("acquire"), st.sampled_from(PEERS), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("release"), st.sampled_from(PEERS), st.integers(0, 2)),
    st.tuples(st.just("cancel"), st.sampled_from(PEERS), st.integers(1, 30)),
    st.tuples(st.just("put"), st.sampled_from(PEERS), st.integers(0, 99)),
    st.tuples(st.just("get"), st.sampled_from(PEERS), st.booleans()),
    st.tuples(st.just("leave"), st.sampled_from(PEERS)),
), max_size=60)


@settings(max_examples=150, derandomize=True, deadline=None, database=None)
@given(ops=ops)
def test_any_sequence_of_requests(ops):
    s = Scheduler()
    for peer in PEERS:
        join(s, peer)
    rid = {peer: 0 for peer in PEERS}
    answered: set[tuple[str, int]] = set()
    got: list[bytes] = []
    put_ok: list[bytes] = []
    generation = {peer: 0 for peer in PEERS}

    def send(peer, msg):
        out = s.handle(MessagesReceived(peer, [msg]))
        for cmd in out:
            m = getattr(cmd, "message", None)
            if type(m) is not p.PrimitiveReply:
                continue
            key = (cmd.to, m.request_id)
            assert key not in answered, f"{key} answered twice"
            answered.add(key)
            if m.status == "ok" and m.values:
                got.extend(m.values)
        return out

    for op in ops:
        kind, peer = op[0], op[1]
        if kind == "leave":
            s.handle(PeerLeft(peer))
            generation[peer] += 1
            join(s, peer)
            continue
        rid[peer] += 1
        r = rid[peer]
        holder = f"{peer}{generation[peer]}-{op[2]}" if kind in ("acquire", "release") else ""
        if kind == "acquire":
            send(peer, p.PrimitiveRequest(r, "semaphore", "S", "acquire", holder, None, 2,
                                          op[3], False))
        elif kind == "release":
            send(peer, p.PrimitiveRequest(r, "semaphore", "S", "release", holder))
        elif kind == "cancel":
            send(peer, p.PrimitiveCancel(op[2]))
        elif kind == "put":
            blob = f"{peer}{r}".encode()
            out = send(peer, p.PrimitiveRequest(r, "queue", "Q", "put", "", blob))
            if any(getattr(c, "message", None) == p.PrimitiveReply(r, "ok") for c in out):
                put_ok.append(blob)
        else:
            send(peer, p.PrimitiveRequest(r, "queue", "Q", "get", "", None, 0, op[2], op[2]))
        sem = s.state.primitives.get(("semaphore", "S"))
        if sem is not None:
            assert len(sem.leases) <= sem.limit == 2
            # waiters are served oldest first: nobody waits while a lease is free
            assert not sem.waits or len(sem.leases) == sem.limit
        q = s.state.primitives.get(("queue", "Q"))
        items = q.items if q is not None else []
        assert not (items and q is not None and any(w.request.op == "get" for w in q.waits))
        # no item lost or duplicated (one a getter got before it left is in ``got``)
        assert sorted(got + items) == sorted(put_ok)
