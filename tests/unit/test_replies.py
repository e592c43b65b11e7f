"""A session's table of requests that get one answer (``engine/replies.py``): answers
reach the request they were made for, of the kind it expects, and a lost connection
fails every pending one."""

from __future__ import annotations

import pytest

from trioflow import protocol as p
from trioflow.engine.replies import ReplyTable
from trioflow.errors import ClientClosedError, ProtocolError


def test_an_answer_reaches_its_own_request_whatever_its_kind() -> None:
    table = ReplyTable()
    primitive = table.open()
    status = table.open(False, p.StatusReply)
    assert primitive.id != status.id  # one counter for every kind of request
    table.reply(p.StatusReply(status.id, [], {}))
    table.reply(p.PrimitiveReply(primitive.id, "ok"))
    assert type(status.reply) is p.StatusReply and status.wait_sync(0)
    assert primitive.reply is not None and primitive.reply.status == "ok"
    assert primitive.wait_sync(0)


def test_an_answer_of_the_wrong_kind_fails_its_request() -> None:
    table = ReplyTable()
    why = table.open(False, p.WhyReply)
    table.reply(p.PrimitiveReply(why.id, "ok"))
    assert why.wait_sync(0) and why.reply is None
    assert isinstance(why.error, ProtocolError)
    assert "expected a WhyReply" in str(why.error) and "PrimitiveReply" in str(why.error)


def test_an_answer_to_nobody_is_dropped() -> None:
    table = ReplyTable()
    gone = table.open()
    table.forget(gone)
    table.reply(p.PrimitiveReply(gone.id, "ok"))  # the request gave up: nothing happens
    assert gone.reply is None and not gone.done


def test_a_lost_connection_fails_pending_and_later_requests() -> None:
    table = ReplyTable()
    pending = table.open(False, p.RunsReply)
    table.fail_all(ClientClosedError("lost the scheduler: test"))
    assert pending.wait_sync(0) and isinstance(pending.error, ClientClosedError)
    with pytest.raises(ClientClosedError, match="lost the scheduler"):
        table.open()
