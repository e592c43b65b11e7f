"""A Future finalized while its session's lock is held, by the very thread holding it
(the garbage collector runs finalizers at any allocation: on the loop thread inside
``Session.handle``, say), must not deadlock: the decref is handed to the loop. Found as a
hang of tests/integration/test_asyncio.py (the loop thread and an asyncio thread both
stuck in ``Session.decref``).

The scenario runs in a fresh interpreter: a deadlocked thread holding the session's lock
would hang this process's cluster for good, and the test must fail, not hang.
"""

from __future__ import annotations

import sys
import textwrap

import trio

SCRIPT = textwrap.dedent("""
    import gc, operator, trio, trio.testing, trioflow

    async def main():
        async with trioflow.open_local_cluster(1, 1) as cluster:
            async with trioflow.AsyncClient(cluster.address) as client:
                future = client.submit(operator.neg, 1)
                assert await future == -1
                session, state = client._session, future._state
                assert state.refs == 1

                def die_under_the_lock():
                    nonlocal future
                    with session.lock:  # as the loop thread holds it in handle()
                        del future  # the finalizer runs here, in the thread holding it
                        gc.collect()

                await trio.to_thread.run_sync(die_under_the_lock)
                while state.refs:  # the loop applies the handed-over decref
                    await trio.testing.wait_all_tasks_blocked()
                other = client.submit(operator.neg, 2)
                other_state = other._state
                with session.lock:  # the same on the loop thread itself
                    del other
                    gc.collect()
                while other_state.refs:
                    await trio.testing.wait_all_tasks_blocked()
                assert await client.submit(operator.neg, 3) == -3
        print("ok", flush=True)

    trio.run(main)
""")


async def test_a_future_dying_under_its_sessions_lock_is_released_later_not_deadlocked():
    with trio.move_on_after(60) as scope:
        out = await trio.run_process([sys.executable, "-c", SCRIPT], capture_stdout=True,
                                     capture_stderr=True, check=False)
    assert not scope.cancelled_caught, ("deadlocked: a Future's finalizer waited for a "
                                        "lock its own thread held")
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    assert out.stdout.decode().strip().endswith("ok")
