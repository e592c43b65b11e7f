"""The slot grant an async run waits for to rejoin (``engine.context.Grant``): woken by
``set`` on the loop, and not cancellable meanwhile, like the shielded wait it replaces."""

import trio
import trio.testing

from trioflow.engine.context import Grant


async def test_a_grant_given_before_the_wait_returns_at_once():
    grant = Grant()
    grant.set()
    with trio.fail_after(5):
        await grant.wait()
    assert grant.granted


async def test_the_wait_ends_when_the_grant_is_set():
    grant = Grant()
    woke = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            async def waiter():
                await grant.wait()
                woke.append(trio.current_time())

            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert woke == []
            grant.set()
    assert len(woke) == 1 and grant.granted


async def test_cancelling_the_waiter_is_held_off_until_the_grant_comes():
    grant = Grant()
    seen = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            async def waiter(task_status=trio.TASK_STATUS_IGNORED):
                with trio.CancelScope() as scope:
                    task_status.started(scope)
                    await grant.wait()
                    seen.append("granted")  # the wait itself is never cancelled
                    await trio.lowlevel.checkpoint()
                    seen.append("not reached")
                seen.append("cancelled after" if scope.cancelled_caught else "?")

            scope = await nursery.start(waiter)
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert seen == []  # still waiting for its slot
            grant.set()
    assert seen == ["granted", "cancelled after"]
