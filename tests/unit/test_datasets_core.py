"""Named datasets in the scheduler core (``core/scheduler/datasets.py``): a published
dataset holds its results after its client leaves, until it is deleted; overriding and
overlapping datasets release only what nothing else holds; restart deletes them."""

from trioflow import protocol as p
from trioflow.core.events import PeerLeft
from trioflow.core.validate import check_scheduler

from .test_scheduler_core import finish, join, recv, sent, submit, with_worker


def ds(rid, op, name="", blob=b"", keys=(), override=False):
    return p.DatasetRequest(rid, op, name, blob, list(keys), override)


def reply(out, to="c"):
    (answer,) = sent(out, to=to, kind=p.DatasetReply)
    return answer


def computed(s, *keys):
    """A scheduler where client "c" holds finished results for ``keys`` (run on "w")."""
    for key in keys:
        recv(s, "c", submit(key))
        recv(s, "w", finish(key))



def test_a_dataset_outlives_its_publisher_until_deleted():
    s = with_worker()
    computed(s, "x", "y")
    assert reply(recv(s, "c", ds(1, "publish", "d", b"pickled", ["x"]))).status == "ok"
    s.handle(PeerLeft("c"))  # the publisher goes: "y" is released, "x" is held
    assert set(s.state.tasks) == {"x"}
    join(s, "c2")
    listed = reply(recv(s, "c2", ds(1, "list")), "c2")
    assert listed.names == ["d"]
    got = reply(recv(s, "c2", ds(2, "get", "d")), "c2")
    assert got.status == "ok" and got.blob == b"pickled"
    out = recv(s, "c2", p.AcquireKeys(["x"]))  # the unpickled future, held by c2
    assert [m.key for m in sent(out, to="c2", kind=p.KeyFinished)] == ["x"]
    assert reply(recv(s, "c2", ds(3, "delete", "d")), "c2").status == "ok"
    assert "x" in s.state.tasks  # c2 still holds it
    out = recv(s, "c2", p.ReleaseKeys(["x"]))
    assert not s.state.tasks and not s.state.dataset_holds
    assert [k for m in sent(out, to="w", kind=p.FreeKeys) for k in m.keys] == ["x"]
    check_scheduler(s.state)


def test_names_clash_unless_overridden_and_overlaps_release_only_the_unheld():
    s = with_worker()
    computed(s, "a", "b", "c")
    recv(s, "c", ds(1, "publish", "one", b"1", ["a", "b"]))
    recv(s, "c", ds(2, "publish", "two", b"2", ["b"]))
    clash = reply(recv(s, "c", ds(3, "publish", "one", b"x", ["c"])))
    assert clash.status == "exists" and "override=True" in clash.text
    recv(s, "c", p.ReleaseKeys(["a", "b", "c"]))
    assert set(s.state.tasks) == {"a", "b"}
    # replacing "one" by a dataset of "b" alone lets "a" go; "b" stays (held twice)
    assert reply(recv(s, "c", ds(4, "publish", "one", b"y", ["b"], override=True))).status == "ok"
    assert set(s.state.tasks) == {"b"} and s.state.dataset_holds == {"b": 2}
    assert reply(recv(s, "c", ds(5, "get", "one"))).blob == b"y"
    recv(s, "c", ds(6, "delete", "two"))
    assert set(s.state.tasks) == {"b"}
    recv(s, "c", ds(7, "delete", "one"))
    assert not s.state.tasks and not s.state.datasets
    check_scheduler(s.state)


def test_bad_requests_are_answered_not_crashed_on():
    s = with_worker()
    computed(s, "x")
    assert reply(recv(s, "c", ds(1, "get", "nope"))).status == "missing"
    assert reply(recv(s, "c", ds(2, "delete", "nope"))).status == "missing"
    assert reply(recv(s, "c", ds(3, "frobnicate", "x"))).status == "invalid"
    assert reply(recv(s, "c", ds(4, "publish", "", b"", []))).status == "invalid"
    gone = reply(recv(s, "c", ds(5, "publish", "d", b"", ["released-key"])))
    assert gone.status == "invalid" and "released-key" in gone.text
    assert not s.state.datasets and not s.state.dataset_holds


def test_restart_deletes_the_datasets_with_the_work():
    s = with_worker()
    s.state.workers["w"].restartable = True
    computed(s, "x")
    recv(s, "c", ds(1, "publish", "d", b"", ["x"]))
    recv(s, "c", p.ReleaseKeys(["x"]))
    assert "x" in s.state.tasks
    out = recv(s, "c", p.RestartRequest(9))
    assert sent(out, to="c", kind=p.RestartReply)[0].kind == ""
    assert not s.state.datasets and not s.state.dataset_holds and not s.state.tasks
