"""``Session._flush`` hands the messages between calls to its connection together
(``send_many``), also across the flush's rounds: a message a call posts joins the ones
queued after that call, as the writer's batching joined them before (issue 12: a
client's round trip as one frame written by the flush itself)."""

from __future__ import annotations

import threading
from typing import Any

import trio
import trio.testing

from trioflow import protocol as p
from trioflow.engine.session import Session


class RecordingConnection:
    """What the session hands over, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def send(self, message: Any) -> None:
        self.batches.append([message])

    def send_many(self, messages: list[Any]) -> None:
        self.batches.append(list(messages))

    async def flush(self) -> None:
        pass


def keys(batches: list[list[Any]]) -> list[list[str]]:
    return [[m.keys[0] for m in batch] for batch in batches]


async def test_messages_between_calls_go_together_and_a_calls_posts_join_the_next_run():
    with trio.fail_after(10):
        conn = RecordingConnection()
        session = Session(conn, "c1")
        seen: list[list[list[str]]] = []

        def call() -> None:  # on the loop, inside the flush: its post only queues
            seen.append(keys(conn.batches))
            session.post(p.FreeKeys(["posted-by-the-call"]))

        def from_a_thread() -> None:  # one flush scheduled for all of these
            session.post(p.FreeKeys(["a"]), p.FreeKeys(["b"]))
            session.call_in_order(call)
            session.post(p.FreeKeys(["c"]))

        # (joined from the loop, which has no turn meanwhile: else a loop that flushes
        # between the thread's posts, as a loaded machine lets it, splits the batch)
        thread = threading.Thread(target=from_a_thread)
        thread.start()
        thread.join()
        await trio.testing.wait_all_tasks_blocked()
        assert seen == [[["a", "b"]]]  # what came before the call went out before it
        assert keys(conn.batches) == [["a", "b"], ["c", "posted-by-the-call"]]


async def test_a_flush_from_the_loop_hands_over_its_messages_at_once():
    with trio.fail_after(10):
        conn = RecordingConnection()
        session = Session(conn, "c1")
        session.post(p.FreeKeys(["x"]), p.FreeKeys(["y"]))
        assert keys(conn.batches) == [["x", "y"]]
