"""The wire's compatibility rule, checked against a record of protocol version 3.

Within one protocol version a message only ever gains fields at its end, with defaults
(docs/protocol.md, "Versioning and compatibility"): peers of the same version but
different releases then still understand each other. ``WIRE_V3`` records every message
of version 3, its fields in order, as released. A change that breaks the rule
(a field renamed, retyped, reordered, removed; a message removed or added) fails here,
and the fix is a new protocol version: bump ``PROTOCOL_VERSION`` and start a new record.
Appending a field with a default passes and needs no record change.
"""

from __future__ import annotations

import attrs

import trioflow.protocol as p
from trioflow.protocol.registry import SPECS


def describe(tp: object) -> str:
    """A field's annotation as written (``list[str]``, ``bytes | None``)."""
    if isinstance(tp, type) and not hasattr(tp, "__origin__"):
        return tp.__name__
    return str(tp).replace("typing.", "")


#: every message of protocol version 3: tag -> "name: type" of each field, in wire order
WIRE_V3: dict[str, list[str]] = {
    "acquire-keys": ["keys: list[str]"],
    "cancel-keys": ["keys: list[str]", "reason: str"],
    "compute-task": [
        "key: str",
        "run_id: int",
        "fn_id: str",
        "payload: bytes",
        "priority: list[int]",
        "deps: list[str]",
        "dep_inline: list[bytes | None]",
        "dep_holders: list[str]",
        "is_async: bool",
        "has_resources: bool",
    ],
    "data-reply": [
        "request_id: int",
        "keys: list[str]",
        "blobs: list[bytes]",
        "missing: list[str]",
        "far_keys: list[str]",
        "far_addresses: list[str]",
    ],
    "dataset-reply": ["request_id: int", "status: str", "text: str", "blob: bytes",
                      "names: list[str]"],
    "dataset-request": ["request_id: int", "op: str", "name: str", "blob: bytes",
                        "keys: list[str]", "override: bool"],
    "event-reply": ["request_id: int", "status: str", "events: Any", "text: str"],
    "event-request": ["request_id: int", "op: str", "topics: list[str]", "msg: Any",
                      "stamp: float"],
    "expect-data": ["keys: list[str]"],
    "fetch-replicas": ["keys: list[str]", "holders: list[str]"],
    "free-keys": ["keys: list[str]"],
    "function": ["fn_id: str", "blob: bytes"],
    "get-data": ["request_id: int", "keys: list[str]"],
    "heartbeat": [],
    "hello": [
        "role: str",
        "name: str",
        "versions: list[int]",
        "token: str",
        "nthreads: int",
        "data_address: str",
        "pid: int",
        "resource_names: list[str]",
        "resource_amounts: list[float]",
        "restartable: bool",
    ],
    "install-plugin": ["name: str", "blob: bytes"],
    "key-erred": [
        "key: str",
        "kind: str",
        "error: bytes",
        "type_name: str",
        "text: str",
        "traceback: str",
        "workers: list[str]",
    ],
    "key-finished": ["key: str", "nbytes: int", "inline: bytes | None", "type_name: str"],
    "key-restarted": ["key: str"],
    "metadata-reply": ["request_id: int", "status: str", "value: Any", "text: str"],
    "metadata-request": ["request_id: int", "op: str", "keys: list[str]", "value: Any"],
    "plugin-installed": ["name: str", "error: str"],
    "plugin-reply": ["request_id: int", "status: str", "text: str", "results: list[Any]"],
    "plugin-request": ["request_id: int", "op: str", "name: str", "blob: bytes",
                       "idempotent: bool"],
    "primitive-cancel": ["request_id: int"],
    "primitive-handles": ["kind: str", "name: str", "delta: int"],
    "primitive-reply": [
        "request_id: int",
        "status: str",
        "values: list[bytes]",
        "number: int",
        "text: str",
    ],
    "primitive-request": [
        "request_id: int",
        "kind: str",
        "name: str",
        "op: str",
        "holder: str",
        "value: bytes | None",
        "number: int",
        "has_timeout: bool",
        "nowait: bool",
        "run_key: str",
        "run_id: int",
    ],
    "register-function": ["fn_id: str", "blob: bytes"],
    "rejoin-requested": ["key: str", "run_id: int"],
    "rejoined": ["key: str", "run_id: int"],
    "release-keys": ["keys: list[str]", "slot_reports: list[int | str]"],
    "remove-plugin": ["name: str"],
    "replicas-fetched": ["keys: list[str]", "failed: list[str]"],
    "replicate-reply": ["request_id: int", "kind: str", "text: str"],
    "replicate-request": ["request_id: int", "keys: list[str]", "n: int", "workers: list[str]"],
    "restart-reply": ["request_id: int", "kind: str", "text: str", "workers: list[str]"],
    "restart-request": ["request_id: int"],
    "restart-worker": [],
    "retry-reply": ["request_id: int", "retried: list[str]", "refused: list[str]", "text: str"],
    "retry-request": ["request_id: int", "keys: list[str]"],
    "runs-reply": ["request_id: int", "start: int", "end: int", "total: int", "runs: list[Any]"],
    "runs-request": ["request_id: int", "since: int", "limit: int"],
    "scatter-data": ["key: str", "blob: bytes", "nbytes: int", "workers: list[str]"],
    "scatter-failed": ["key: str", "address: str", "text: str"],
    "scatter-to": ["key: str", "address: str"],
    "seceded": ["key: str", "run_id: int"],
    "status-reply": ["request_id: int", "workers: list[Any]", "tasks: Any"],
    "status-request": ["request_id: int", "with_keys: bool", "min_workers: int"],
    "steal-tasks": ["keys: list[str]", "run_ids: list[int]"],
    "submit-task": [
        "key: str",
        "fn_id: str",
        "payload: bytes",
        "deps: list[str]",
        "parent: str",
        "is_async: bool",
        "retries: int",
        "priority: int",
        "workers: list[str]",
        "run_once: bool",
        "resource_names: list[str]",
        "resource_amounts: list[float]",
    ],
    "task-erred": [
        "key: str",
        "run_id: int",
        "error: bytes",
        "type_name: str",
        "text: str",
        "traceback: str",
        "start: float",
        "duration: float",
        "thread: str",
    ],
    "task-finished": [
        "key: str",
        "run_id: int",
        "nbytes: int",
        "inline: bytes | None",
        "duration: float",
        "type_name: str",
        "start: float",
        "thread: str",
        "slot_reports: list[int | str]",
    ],
    "task-placed": [
        "key: str",
        "run_id: int",
        "fn_id: str",
        "payload: bytes",
        "parent: str",
        "is_async: bool",
        "retries: int",
        "priority: int",
        "run_once: bool",
        "slot_reports: list[int | str]",
    ],
    "tasks-returned": ["keys: list[str]", "run_ids: list[int]"],
    "wait-ended": ["run_key: str", "run_id: int"],
    "wait-failed": ["run_keys: list[str]", "run_ids: list[int]", "kind: str", "report: str"],
    "wait-keys": [
        "run_key: str",
        "run_id: int",
        "keys: list[str]",
        "has_timeout: bool",
        "any_of: bool",
        "slot_reports: list[int | str]",
    ],
    "welcome": [
        "version: int",
        "peer_id: str",
        "scheduler_id: str",
        "inline_limit: int",
        "dashboard: str",
        "folds_slot_reports: bool",
        "versions: Any",
    ],
    "why-reply": ["request_id: int", "key: str", "text: str"],
    "why-request": ["request_id: int", "key: str"],
    "worker-closing": [],
    "worker-threads": ["threads: int", "idle: int", "overflow: int", "rss: int"],
}


def current() -> dict[str, list[str]]:
    return {tag: [f"{f.name}: {describe(f.type)}" for f in attrs.fields(cls)]
            for cls, (tag, *_) in SPECS.items()}


def test_the_record_is_of_the_version_spoken():
    assert p.PROTOCOL_VERSION == 3, "a new protocol version starts a new record (WIRE_V4)"


def test_messages_only_gain_fields_at_their_end():
    now = current()
    broken = []
    for tag, fields in WIRE_V3.items():
        if tag not in now:
            broken.append(f"{tag}: removed")
        elif now[tag][: len(fields)] != fields:
            broken.append(f"{tag}: was {fields}, now {now[tag]}")
    assert not broken, "incompatible within protocol version 3:\n" + "\n".join(broken)


def test_no_message_is_new_within_the_version():
    new = sorted(set(current()) - set(WIRE_V3))
    assert not new, (f"messages {new} are not in protocol version 3: a peer of the same "
                     "version would close the connection on them (bump the version)")


def test_appended_fields_have_defaults():
    for cls, (tag, *_) in SPECS.items():
        if tag not in WIRE_V3:
            continue
        for f in attrs.fields(cls)[len(WIRE_V3[tag]):]:
            assert f.default is not attrs.NOTHING, f"{tag}.{f.name} was appended without a default"
