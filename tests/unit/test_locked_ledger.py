"""LockedLedger, SlotTokens and Session.send_in_order: a run's ledger events happen on
its own thread, and their messages reach the stream in ledger order."""

import threading
import time

import pytest
import trio

from trioflow import protocol as p
from trioflow.core import worker as w
from trioflow.engine.session import Session
from trioflow.errors import SlotAccountingError
from trioflow.net.worker_ledger import LockedLedger, SlotTokens


def spec(key, prio=0, is_async=False):
    return p.ComputeTask(key, 1, "f", b"", [0, 0, prio], [], [], [], is_async)


class Sink:
    """Carries out commands like WorkerNode does, recording what happens and whether
    the ledger's lock is held meanwhile."""

    def __init__(self, ledger_lock_holder, nthreads):
        self.holder = ledger_lock_holder
        self.tokens = SlotTokens(nthreads)
        self.sent = []
        self.started = []
        self.locked = []

    def __call__(self, commands):
        self.locked.append(self.holder().lock.locked())
        w.execute(commands, self)

    def send_message(self, message):
        self.sent.append(message)

    def acquire_slot(self, run):
        self.tokens.acquire_on_behalf_of_nowait(run)

    def release_slot(self, run):
        self.tokens.release_on_behalf_of(run)

    def start_run(self, run):
        self.started.append(run.key)

    def wake_rejoin(self, run):
        self.started.append(f"granted {run.key}")

    def fetch_inputs(self, run):
        raise AssertionError


def locked_ledger(nthreads=1):
    box = {}
    sink = Sink(lambda: box["ledger"], nthreads)
    ledger = box["ledger"] = LockedLedger(w.WorkerState(nthreads), sink)
    return ledger, sink


def test_slot_tokens_refuse_a_second_token_and_an_unheld_release():
    tokens = SlotTokens(1)
    tokens.acquire_on_behalf_of_nowait("a")
    assert tokens.borrowed_tokens == 1
    with pytest.raises(SlotAccountingError, match="has none"):
        tokens.acquire_on_behalf_of_nowait("b")
    with pytest.raises(SlotAccountingError, match="does not hold"):
        tokens.release_on_behalf_of("b")
    tokens.release_on_behalf_of("a")
    assert tokens.borrowed_tokens == 0


def test_every_event_is_carried_out_under_the_lock_and_tokens_move_at_the_event():
    ledger, sink = locked_ledger()
    ledger.task_assigned(spec("a"), False)
    a = ledger.runs["a"]
    ledger.task_assigned(spec("b"), False)
    # a thread-side secede frees the token at once: a loop-side grant right after it
    # finds one (the deferred release of a loop-only limiter did not)
    ledger.secede(a)
    assert sink.started == ["a", "b"] and sink.tokens.borrowed_tokens == 1
    ledger.rejoin(a)
    nxt, rejoiner, current = ledger.end_on_thread(ledger.runs["b"], "done-b",
                                                  w.thread_may_take, lambda r: True)
    assert (nxt, rejoiner, current) == (a, True, True)
    assert sink.tokens.borrowed_tokens == 1 and a.state is w.RunState.RUNNING
    assert sink.sent == [p.Seceded("a", 1), p.RejoinRequested("a", 1), "done-b",
                         p.Rejoined("a", 1)]
    assert all(sink.locked)
    ledger.check()


def test_a_run_that_is_not_current_changes_nothing():
    ledger, sink = locked_ledger()
    ledger.task_assigned(spec("a"), False)
    a = ledger.runs["a"]
    assert ledger.run_ended(a, "done") is True
    before = list(sink.sent)
    assert ledger.run_ended(a, "again") is False
    assert ledger.end_on_thread(a, "again", None, lambda r: True) == (None, False, False)
    ledger.secede(a)  # neither current nor RUNNING: ignored
    ledger.rejoin(a)
    assert sink.sent == before


def test_a_helping_thread_ends_its_run_without_taking_queued_work():
    ledger, sink = locked_ledger()
    ledger.task_assigned(spec("a"), False)
    ledger.task_assigned(spec("b"), False)
    nxt, rejoiner, current = ledger.end_on_thread(ledger.runs["a"], "done-a", None,
                                                  lambda r: True)
    # not handed over on this thread: the ledger starts b (on a thread of its own)
    assert (nxt, rejoiner, current) == (None, False, True)
    assert sink.started == ["a", "b"]


def test_placed_children_and_the_closing_message_keep_ledger_order():
    ledger, sink = locked_ledger()
    ledger.task_assigned(spec("parent"), False)
    placed = p.TaskPlaced("c", 1, "f", b"", "parent")
    assert ledger.task_placed(w.placed_spec(placed, 1), placed) is True
    ledger.close(then=lambda: sink.send_message(p.WorkerClosing()))
    assert ledger.task_placed(w.placed_spec(placed, 1), placed) is False
    assert sink.sent == [placed, p.WorkerClosing()]


def test_events_from_many_threads_keep_tokens_and_ledger_in_step():
    """Two runs secede and rejoin from their own threads, racing each other and the
    'loop' (this thread) assigning runs and ending the ones that started: no
    SlotAccountingError, and the ledger and the tokens agree at the end."""
    ledger, sink = locked_ledger(nthreads=2)
    ledger.task_assigned(spec("x"), False)
    ledger.task_assigned(spec("y"), False)
    x, y = ledger.runs["x"], ledger.runs["y"]
    errors = []
    done = threading.Event()

    def flip(run):
        try:
            for _ in range(200):
                ledger.secede(run)
                ledger.rejoin(run)
                while run.state is not w.RunState.RUNNING:  # granted by the loop's ends
                    time.sleep(0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=flip, args=(r,)) for r in (x, y)]
    for t in threads:
        t.start()
    i = 0
    deadline = time.monotonic() + 30
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        i += 1
        ledger.task_assigned(spec(f"r{i}"), False)
        for run in list(ledger.runs.values()):
            if run.key.startswith("r") and run.state is w.RunState.RUNNING:
                ledger.run_ended(run, f"done-{run.key}")
    for t in threads:
        t.join(timeout=5)
    done.set()
    assert not errors and not any(t.is_alive() for t in threads)
    for run in list(ledger.runs.values()):  # end what is left, then everything agrees
        if run.key.startswith("r") and run.state is w.RunState.RUNNING:
            ledger.run_ended(run, "done")
    with ledger.lock:
        holding = ledger.state.holding
    assert sink.tokens.borrowed_tokens == holding
    assert all(sink.locked)
    ledger.check()


# ------------------------------------------------------------------ Session.send_in_order


class Conn:
    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)

    def send_many(self, messages):  # (the Connection protocol's: a flush's runs)
        self.sent.extend(messages)


async def test_send_in_order_never_overtakes_what_a_thread_queued():
    conn = Conn()
    session = Session(conn, "me")
    # a task thread's event: queued, the loop is woken to flush it (called here as if
    # from another thread, so that the loop has not flushed it yet)
    loop_thread, session.loop_thread = session.loop_thread, -1
    session.send_in_order("thread-1")
    session.loop_thread = loop_thread
    assert conn.sent == []
    # a loop-side event meanwhile: it must go behind, not straight to the connection
    session.send_in_order("loop-1")
    assert conn.sent == []
    await trio.testing.wait_all_tasks_blocked()
    assert conn.sent == ["thread-1", "loop-1"]
    # nothing queued and no flush under way: the loop sends at once
    session.send_in_order("loop-2")
    assert conn.sent == ["thread-1", "loop-1", "loop-2"]


async def test_send_in_order_inside_a_flush_goes_behind_the_rest_of_the_batch():
    conn = Conn()
    session = Session(conn, "me")

    def item():
        session.send_in_order("from-item")  # (a ledger event run by a flushed item)

    # as if from a thread, with the loop not running meanwhile (from a real thread the
    # loop could flush the item before the post: the other order, also a right one)
    loop_thread, session.loop_thread = session.loop_thread, -1
    session.call_in_order(item)
    session.post("posted-after")
    session.loop_thread = loop_thread
    await trio.testing.wait_all_tasks_blocked()
    assert conn.sent == ["posted-after", "from-item"]


async def test_send_in_order_after_close_drops():
    conn = Conn()
    session = Session(conn, "me")
    session.close("gone")
    session.send_in_order("late")
    await trio.to_thread.run_sync(session.send_in_order, "late too")
    assert conn.sent == []
