"""``Client.retry`` in the scheduler core (``core/scheduler/retry.py``): the failed
chain runs again inputs first, holders hear ``KeyRestarted`` before the reply, and what
cannot run again is refused with its reason."""

from trioflow import protocol as p
from trioflow.core.validate import check_scheduler

from .test_scheduler_core import recv, sent, submit, with_worker


def erred(key, run_id=1):
    return p.TaskErred(key, run_id, b"exc", "builtins.OSError", "transient")



def test_the_failed_chain_runs_again_inputs_first():
    s = with_worker()
    recv(s, "c", submit("a"), submit("b", deps=["a"]))
    recv(s, "w", erred("a"))
    assert s.state.tasks["b"].status.name == "ERRED"
    out = recv(s, "c", p.RetryRequest(1, ["b"]))
    to_c = sent(out, to="c")
    assert [type(m).__name__ for m in to_c] == ["KeyRestarted", "KeyRestarted", "RetryReply"]
    assert [m.key for m in to_c[:2]] == ["a", "b"]  # inputs first
    assert to_c[2].retried == ["a", "b"] and not to_c[2].refused
    # a runs again (run 2); b waits for it
    assert [m.key for m in sent(out, to="w", kind=p.ComputeTask)] == ["a"]
    assert s.state.tasks["b"].waiting_on == {"a"}
    check_scheduler(s.state)


def test_scatters_unknown_keys_and_their_dependents_are_refused():
    s = with_worker()
    recv(s, "c", p.ScatterData("s", b"v", 1), submit("t", deps=["s"]))
    recv(s, "c", p.CancelKeys(["s"], "no"))  # s and t fail (cancelled)
    (reply,) = sent(recv(s, "c", p.RetryRequest(2, ["t", "gone"])), to="c", kind=p.RetryReply)
    assert reply.retried == [] and sorted(reply.refused) == ["gone", "s", "t"]
    assert "'s': it was cancelled" in reply.text
    assert "'t': its input 's' cannot run again" in reply.text
    assert "'gone': no such task" in reply.text
