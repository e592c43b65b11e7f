"""Regressions for the bugs a dask user met switching to trioflow (issue 14).

Each test states dask.distributed's behaviour (checked side by side when the test was
written) and checks trioflow's is the same, or the documented, deliberate difference.
"""

import collections
import gc
import pathlib
import traceback
import weakref

import pytest
import trio

import trioflow

from .conftest import cluster_client
from .tasks import boom, inc

P = collections.namedtuple("P", "a b")
PACKAGE = str(pathlib.Path(trioflow.__file__).parent)


class Box(dict):
    """A dict subclass: scattered as one value, keeping its type (as dask does)."""


def ident(x):
    return x


def kwargs_of(**kwargs):
    return kwargs


async def test_as_completed_frees_its_futures_without_gc():
    async with cluster_client(1, 1) as (_, client):
        gc.disable()
        try:
            fs = client.map(inc, range(3))
            refs = [weakref.ref(f) for f in fs]
            ac = trioflow.as_completed(fs)
            async for _ in ac:
                break  # given up on with futures still inside
            del ac, fs, _
            assert all(r() is None for r in refs)
            # and a finished iteration too
            f = client.submit(inc, 10)
            ref = weakref.ref(f)
            assert [g async for g in trioflow.as_completed([f])] == [f]
            del f
            assert ref() is None
        finally:
            gc.enable()


async def test_scatter_keeps_dict_subclass_and_namedtuple():
    async with cluster_client(1, 1) as (_, client):
        box = await client.scatter(Box(a=1))
        assert isinstance(box, trioflow.Future)  # one value, as dask
        value = await box
        assert type(value) is Box and value == {"a": 1}
        pair = await client.scatter(P(1, 2))
        assert type(pair) is P and all(isinstance(f, trioflow.Future) for f in pair)
        assert await client.gather(pair) == P(1, 2)
        assert type(await client.gather(pair)) is P
        # a plain dict is still split into one future per value
        split = await client.scatter({"x": 1})
        assert set(split) == {"x"} and await split["x"] == 1


async def test_futures_inside_a_namedtuple_argument_are_resolved():
    async with cluster_client(1, 1) as (_, client):
        f = client.submit(inc, 1)
        result = await client.submit(ident, P(f, [f, 3]))
        assert result == P(2, [2, 3]) and type(result) is P


async def test_cancel_a_finished_future_cancels_it_and_its_dependents():
    async with cluster_client(1, 1) as (cluster, client):
        f = client.submit(inc, 1)
        assert await f == 2
        waiting = client.submit(lambda x, _: x, f, client.submit(trio.sleep, 0.2))
        f.cancel()
        assert f.status == "cancelled"  # at once, as dask's
        with pytest.raises(trioflow.CancelledError):
            await f
        with pytest.raises(trioflow.CancelledError):
            await client.submit(inc, f)  # submitted after the cancel
        with pytest.raises(trioflow.CancelledError):
            await waiting  # submitted before, still waiting
        # the value is gone from the cluster
        state = cluster.scheduler.state
        assert all(f.key not in w.has_what for w in state.workers.values())


def _blocking_cancel():
    with trioflow.Client(workers=1, threads_per_worker=1, processes=False) as client:
        f = client.submit(inc, 1)
        assert f.result(timeout=30) == 2
        client.cancel([f])
        assert f.status == "cancelled"
        with pytest.raises(trioflow.CancelledError):
            f.result(timeout=30)


async def test_cancel_from_blocking_client_marks_future_at_once():
    await trio.to_thread.run_sync(_blocking_cancel)


async def test_as_completed_of_non_futures_raises_type_error():
    with pytest.raises(TypeError, match="int"):
        trioflow.as_completed([1, 2, 3])


async def test_future_of_another_cluster_says_so():
    async with cluster_client(1, 1) as (_, client), cluster_client(1, 1) as (_, other):
        theirs = other.submit(inc, 1)
        await theirs
        with pytest.raises(ValueError, match="another cluster"):
            client.submit(inc, theirs)


async def test_map_with_too_few_keys_raises():
    async with cluster_client(1, 1) as (_, client):
        with pytest.raises(ValueError, match="1 keys for 3 items"):
            client.map(inc, [1, 2, 3], key=["a"])
        fs = client.map(inc, [1, 2], key=["a", "b"])
        assert [f.key for f in fs] == ["a", "b"]
        assert await client.gather(fs) == [2, 3]


async def test_dask_option_names_never_reach_the_function():
    async with cluster_client(1, 1) as (_, client):
        f = client.submit(kwargs_of, fifo_timeout="100ms", allow_other_workers=False,
                          actor=False, x=1)
        assert await f == {"x": 1}
        fs = client.map(lambda x, **kw: kw, [1], batch_size=10, fifo_timeout=1)
        assert await client.gather(fs) == [{}]
        with pytest.raises(TypeError, match="allow_other_workers"):
            client.submit(kwargs_of, workers=["w"], allow_other_workers=True)
        with pytest.raises(TypeError, match="actor"):
            client.submit(kwargs_of, actor=True)
        # batch_size is a map option only: for submit it is the function's argument
        assert await client.submit(kwargs_of, batch_size=3) == {"batch_size": 3}


async def test_scatter_futures_are_finished_at_once():
    async with cluster_client(1, 1) as (_, client):
        f = await client.scatter(5)
        assert f.status == "finished" and f.done()
        big = await client.scatter(b"x" * (2 << 20))  # over the inline limit: uploaded
        assert big.status == "finished"
        assert await client.submit(len, big) == 2 << 20


async def test_failed_await_shows_no_trioflow_internals():
    async with cluster_client(1, 1) as (_, client):
        f = client.submit(boom)
        for how in ("await", "gather"):
            try:
                if how == "await":
                    await f
                else:
                    await client.gather([f])
            except ValueError as exc:
                frames = traceback.extract_tb(exc.__traceback__)
            internal = [fr for fr in frames if fr.filename.startswith(PACKAGE)]
            assert len(internal) <= 1, (how, internal)
            assert frames[0].name == "test_failed_await_shows_no_trioflow_internals"


def _blocking_failure():
    with trioflow.Client(workers=1, threads_per_worker=1, processes=False) as client:
        f = client.submit(boom)
        for call in (f.result, client.gather):
            try:
                call(f) if call is client.gather else call(30)
            except ValueError as exc:
                frames = traceback.extract_tb(exc.__traceback__)
            assert len([fr for fr in frames if fr.filename.startswith(PACKAGE)]) <= 1


async def test_failed_result_shows_no_trioflow_internals():
    await trio.to_thread.run_sync(_blocking_failure)
