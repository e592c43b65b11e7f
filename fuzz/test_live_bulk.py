"""A live bulk data server (a worker's bulk port) under fire, over raw TCP: random
sequences of hellos (right, wrong or no token), headers declaring frames of up to
128 MB, garbage, truncated headers, ended by a reset, a close, or by waiting for the
server. Before a peer's token is checked the server may read no more than the hello
limit (nothing a peer declares is allocated); it must close every connection it does
not serve, never log an error, and serve an honest peer afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import attrs
import trio
from hypothesis import given
from hypothesis import strategies as st

from trioflow.net import bulk
from trioflow.testing.hostile import bulk_message, logged_errors, reset
from trioflow.testing.profiles import fuzz_settings

TOKEN = "bulk-fuzz-token"
#: seconds for one whole example
DEADLINE = 30

#: what one step sends (the right token only in "auth_hello")
PIECES = {
    "auth_hello": bulk_message(["hello", bulk.VERSION, TOKEN]),
    "wrong_hello": bulk_message(["hello", bulk.VERSION, "nope"]),
    "no_token_hello": bulk_message(["hello", bulk.VERSION]),
    "put_128mb": bulk_message(["put", ["k"], [1], [128 * 1024 * 1024]]),
    "data_many": bulk_message(["data", ["k"], [3], [], [50_000_000] * 3]),
    "get": bulk_message(["get", ["k", "missing"]]),
    "huge_header": (1 << 31).to_bytes(4, "big"),
    "truncated": (200).to_bytes(4, "big") + b"\x95\x01",
    "garbage": b"\xc1" * 16,
}


@attrs.frozen
class BulkAttack:
    pieces: tuple[str, ...]
    end: str  # "reset", "close" or "wait"


def bulk_attacks() -> st.SearchStrategy[BulkAttack]:
    return st.builds(BulkAttack, st.lists(st.sampled_from(sorted(PIECES)), max_size=4).map(tuple),
                     st.sampled_from(["reset", "close", "wait"]))


async def _attack(port: int, attack: BulkAttack) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        for piece in attack.pieces:
            await stream.send_all(PIECES[piece])
        if attack.end == "wait" and "auth_hello" not in attack.pieces[:1]:
            # unauthenticated: the server must close within its handshake timeout
            while await stream.receive_some(65536):
                pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        if attack.end == "reset":
            reset(stream)
        else:
            await trio.aclose_forcefully(stream)


@contextlib.asynccontextmanager
async def _attacked_server(get, put, attacks_: list[BulkAttack]) -> AsyncIterator[str]:
    """A bulk server on loopback, after ``attacks_`` have been made on it; yields its
    address, and stops it on exit (the whole block within DEADLINE)."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(lambda task_status: bulk.serve_bulk(
                get, put, "127.0.0.1", token=TOKEN, ssl_context=None,
                task_status=task_status))
            port = int(address.rsplit(":", 1)[1])
            for attack in attacks_:
                with trio.fail_after(5):
                    await _attack(port, attack)
            yield address
            nursery.cancel_scope.cancel()


async def _siege(attacks_: list[BulkAttack]) -> None:
    store: dict[str, list] = {}

    async def get(keys):
        found = [k for k in keys if k in store]
        return found, [store[k] for k in found], [k for k in keys if k not in store]

    async def put(values):
        store.update(values)

    async with _attacked_server(get, put, attacks_) as address:
        pool = bulk.BulkPool(token=TOKEN, ssl_context=None)
        await pool.put(address, {"honest": [b"v" * 10_000]})
        got, missing = await pool.get(address, ["honest"])
        assert bytes(got["honest"][0]) == b"v" * 10_000 and not missing
        await pool.aclose()


@fuzz_settings(scale=0.1)
@given(attacks_=st.lists(bulk_attacks(), min_size=1, max_size=4))
def test_bulk_port_survives_hostile_peers(attacks_):
    saved_timeout, bulk.HANDSHAKE_TIMEOUT = bulk.HANDSHAKE_TIMEOUT, 0.3  # "wait" ends soon
    try:
        with logged_errors() as errors:
            trio.run(_siege, attacks_)
    finally:
        bulk.HANDSHAKE_TIMEOUT = saved_timeout
    assert not errors, [r.getMessage() for r in errors]


@fuzz_settings(scale=0.1)
@given(attacks_=st.lists(bulk_attacks().filter(lambda a: "auth_hello" not in a.pieces),
                         min_size=1, max_size=4))
def test_unauthenticated_bulk_peers_cost_no_more_than_the_hello_limit(attacks_):
    reads: list[int] = []
    original_read = bulk.BulkStream._read

    async def recording_read(self, n, timeout=None):
        reads.append(n)
        return await original_read(self, n, timeout)

    async def attacks_only():
        seen: list[int] = []

        async def get(keys):
            return [], [], keys

        async with _attacked_server(get, None, attacks_):
            seen.extend(reads)
        # every read the server made was at most a hello: nothing declared was allocated
        assert all(n <= bulk.MAX_HELLO for n in seen), max(seen)

    bulk.BulkStream._read = recording_read
    saved_timeout, bulk.HANDSHAKE_TIMEOUT = bulk.HANDSHAKE_TIMEOUT, 0.3
    try:
        trio.run(attacks_only)
    finally:
        bulk.BulkStream._read = original_read
        bulk.HANDSHAKE_TIMEOUT = saved_timeout
