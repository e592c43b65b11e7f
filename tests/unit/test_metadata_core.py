"""The scheduler core's metadata tree and event log (``core/scheduler/metadata.py``):
paths make dicts on the way, reads of what is not there say so, events are kept per
topic oldest first and bounded, and the number of topics is bounded."""

from trioflow import protocol as p
from trioflow.config import EVENT_TOPICS, EVENTS_PER_TOPIC

from .test_scheduler_core import recv, sent, with_worker


def meta(s, rid, op, keys, value=None):
    (answer,) = sent(recv(s, "c", p.MetadataRequest(rid, op, list(keys), value)),
                     to="c", kind=p.MetadataReply)
    assert answer.request_id == rid
    return answer


def event(s, rid, op, topics, msg=None, stamp=0.0):
    (answer,) = sent(recv(s, "c", p.EventRequest(rid, op, list(topics), msg, stamp)),
                     to="c", kind=p.EventReply)
    assert answer.request_id == rid
    return answer


def test_metadata_paths_make_dicts_and_replace_what_is_in_the_way():
    s = with_worker()
    assert meta(s, 1, "set", ["a", "b", "c"], 3).status == "ok"
    assert meta(s, 2, "get", ["a"]).value == {"b": {"c": 3}}
    assert meta(s, 3, "set", ["a", "b"], [1, 2]).status == "ok"
    assert meta(s, 4, "get", ["a", "b"]).value == [1, 2]
    # a value in the way of a longer path is replaced by a dict, as in dask
    assert meta(s, 5, "set", ["a", "b", "d"], "x").status == "ok"
    assert meta(s, 6, "get", []).value == {"a": {"b": {"d": "x"}}}


def test_reading_what_is_not_there_says_where():
    s = with_worker()
    meta(s, 1, "set", ["a"], 1)
    missing = meta(s, 2, "get", ["a", "b"])
    assert missing.status == "missing" and "['a', 'b']" in missing.text
    assert meta(s, 3, "get", ["zzz"]).status == "missing"
    assert meta(s, 4, "set", [], 1).status == "invalid"
    assert meta(s, 5, "drop", ["a"]).status == "invalid"


def test_events_are_kept_per_topic_oldest_first_and_bounded():
    s = with_worker()
    for i in range(EVENTS_PER_TOPIC + 5):
        assert event(s, i, "log", ["t"], {"i": i}, float(i)).status == "ok"
    event(s, -1, "log", ["t", "u"], "both", 9e9)
    got = event(s, -2, "get", ["t"]).events["t"]
    assert len(got) == EVENTS_PER_TOPIC
    assert got[0] == [6.0, {"i": 6}] and got[-1] == [9e9, "both"]
    every = event(s, -3, "get", []).events
    assert sorted(every) == ["t", "u"] and every["u"] == [[9e9, "both"]]
    assert event(s, -4, "get", ["nothing-here"]).events == {"nothing-here": []}


def test_topics_are_bounded_and_a_topic_must_be_named():
    s = with_worker()
    for i in range(EVENT_TOPICS):
        assert event(s, i, "log", [f"t{i}"], i).status == "ok"
    refused = event(s, -1, "log", ["one-too-many"], 0)
    assert refused.status == "invalid" and str(EVENT_TOPICS) in refused.text
    assert event(s, -2, "log", ["t0"], 1).status == "ok"  # an existing topic still takes events
    assert event(s, -3, "log", [""], 1).status == "invalid"
    assert event(s, -4, "log", [], 1).status == "invalid"
