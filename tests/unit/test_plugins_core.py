"""Worker plugins in the scheduler core (``core/scheduler/plugins.py``): every worker is
sent the plugin, a worker that joins gets it before anything else, and a registration is
answered once each worker connected then has set it up or left."""

from trioflow import protocol as p
from trioflow.core.events import PeerLeft

from .test_scheduler_core import join, recv, sent, with_worker


def reg(rid, name="pl", blob=b"plugin", idempotent=False):
    return p.PluginRequest(rid, "register", name, blob, idempotent)


def replies(out, to="c"):
    return sent(out, to=to, kind=p.PluginReply)


def test_a_registration_is_answered_when_every_worker_has_set_it_up_or_left():
    s = with_worker()
    join(s, "w2", role="worker", nthreads=1)
    out = recv(s, "c", reg(1))
    assert [m.name for m in sent(out, to="w", kind=p.InstallPlugin)] == ["pl"]
    assert [m.name for m in sent(out, to="w2", kind=p.InstallPlugin)] == ["pl"]
    assert not replies(out)
    assert not replies(recv(s, "w", p.PluginInstalled("pl", "")))
    out = s.handle(PeerLeft("w2"))  # the other one leaves instead of answering
    (answer,) = replies(out)
    assert answer.status == "ok" and answer.results == [["w", ""]]


def test_a_joining_worker_gets_every_plugin_before_its_first_task():
    s = with_worker()
    recv(s, "c", reg(1, "a"), reg(2, "b"))
    recv(s, "w", p.PluginInstalled("a", ""), p.PluginInstalled("b", "OSError: no"))
    # a task only "late" may run waits for it, and goes to it as it joins
    recv(s, "c", p.SubmitTask("t1", "f", b"payload", [], workers=["late"]))
    out = join(s, "late", role="worker", nthreads=1)
    to_late = sent(out, to="late")
    assert [type(m).__name__ for m in to_late[:2]] == ["InstallPlugin", "InstallPlugin"]
    assert [m.name for m in to_late[:2]] == ["a", "b"]
    assert any(type(m) is p.ComputeTask for m in to_late[2:])  # the work comes after


def test_failures_idempotence_unregister_and_a_client_that_left():
    s = with_worker()
    out = recv(s, "c", reg(1))
    (answer,) = replies(recv(s, "w", p.PluginInstalled("pl", "OSError: no disk")))
    assert answer.results == [["w", "OSError: no disk"]]
    # idempotent: kept as it is, no new setup anywhere
    out = recv(s, "c", reg(2, blob=b"other", idempotent=True))
    assert not sent(out, to="w") and replies(out)[0].status == "ok"
    out = recv(s, "c", p.PluginRequest(3, "unregister", "pl"))
    assert [m.name for m in sent(out, to="w", kind=p.RemovePlugin)] == ["pl"]
    assert replies(out)[0].status == "ok"
    assert replies(recv(s, "c", p.PluginRequest(4, "unregister", "pl")))[0].status == "missing"
    assert replies(recv(s, "c", p.PluginRequest(5, "frob", "pl")))[0].status == "invalid"
    assert replies(recv(s, "c", reg(6, name="")))[0].status == "invalid"
    # a client that leaves while its registration waits is answered by nobody
    recv(s, "c", reg(7, "slow"))
    s.handle(PeerLeft("c"))
    assert not s.state.plugin_waits and "slow" in s.state.plugins
    assert not replies(recv(s, "w", p.PluginInstalled("slow", "")))
