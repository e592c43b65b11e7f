"""Parsing --memory-limit (dask's spelling), and the no-new-work gate."""

from __future__ import annotations

import threading

import pytest

from trioflow.net.memory import MemoryManager, parse_memory_limit, system_memory


@pytest.mark.parametrize(("spec", "expected"), [
    ("4GiB", 4 * 2**30), ("500MB", 500 * 10**6), ("500 mb", 500 * 10**6),
    ("1.5kB", 1500), ("2KiB", 2048), ("1e9", 10**9), (10**9, 10**9), ("123", 123),
    (None, None), (0, None), ("0", None),
])
def test_memory_limit_spellings(spec, expected):
    assert parse_memory_limit(spec) == expected


def test_fractions_and_auto_are_of_the_machines_memory():
    total = system_memory()
    assert parse_memory_limit(0.5) == int(total * 0.5)
    assert parse_memory_limit("0.25") == int(total * 0.25)
    assert parse_memory_limit("auto") == total
    assert parse_memory_limit("auto", workers=4) == total // 4


@pytest.mark.parametrize("spec", ["lots", "4 parsecs", "-1", "1..2GB", -5])
def test_bad_memory_limits_say_what_is_accepted(spec):
    with pytest.raises(ValueError, match=r"memory limit .*(give bytes|positive)"):
        parse_memory_limit(spec)


def test_the_gate_holds_task_threads_while_paused():
    manager = MemoryManager(1000, {}, {}, name="w")
    manager.paused = True
    passed = threading.Event()

    def run():
        manager.gate_sync()
        passed.set()

    thread = threading.Thread(target=run)
    thread.start()
    assert not passed.wait(0.05)  # (a bounded check that it is held, not a wait for it)
    manager.paused = False
    manager._update_gate()
    thread.join(10)
    assert passed.is_set()


def test_a_result_counted_on_its_thread_closes_the_gate_at_once():
    """A task thread counts its run's result before the run ends (``count``, any
    thread), so the run it takes next meets the gate closed when that result is over
    the target, before the loop has looked at it (``track`` later changes nothing)."""
    data: dict = {"big": b"x"}
    manager = MemoryManager(1000, data, {}, name="w", target=0.6)
    assert not manager._blocked()
    manager.count("big", 800)  # over 600: a run started now would stack on top
    assert manager._blocked() and manager.held == 800
    manager.count("big", 800)  # counting again (the loop's ``track``) adds nothing
    assert manager.held == 800


async def test_a_value_counted_after_it_was_freed_is_forgotten_by_the_spiller(tmp_path):
    """A task thread counts its run's result before the ledger ends the run; a FreeKeys
    on the loop may free the value in between, leaving a size with no value. The
    spiller used to pick that key again and again without ever yielding (a worker
    spinning on its loop, seen once in a full suite run): it forgets it."""
    import trio

    manager = MemoryManager(1000, {}, {}, name="w", directory=str(tmp_path), target=0.6)
    manager.count("gone", 800)  # over the target, with no value behind it
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(manager._spill_loop)
            manager._wake.set()
            await manager.wait_for(lambda m: "gone" not in m.sizes)
            nursery.cancel_scope.cancel()
    assert manager.held == 0
