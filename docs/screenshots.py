"""Take the dashboard screenshots in docs/images/ (run by hand: ``python docs/screenshots.py``).

Starts a local cluster, runs a tree of tasks launching tasks plus a map while headless
Chromium (selenium; see tests/integration/browser.py) watches, and saves PNGs.
"""

from __future__ import annotations

import pathlib
import sys
import threading
import time

import trio

import trioflow

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from tests.integration.browser import chromium, wait_until  # noqa: E402

# by reference (a module the in-process workers import), not pickled by value: they
# share a threading.Event with this script
from tests.integration.test_dashboard_browser import (  # noqa: E402
    RELEASE,
    fib_no_secede,
    waits_on_held,
)


def work(x):
    time.sleep(0.02 + (x % 7) * 0.005)
    return x


def fan_out(n):
    client = trioflow.get_client()
    futures = client.map(work, range(n))
    trioflow.secede()
    total = sum(client.gather(futures))
    trioflow.rejoin()
    return total


def root(n):
    client = trioflow.get_client()
    futures = [client.submit(fan_out, 40) for _ in range(n)]
    trioflow.secede()
    total = sum(client.gather(futures))
    trioflow.rejoin()
    return total


async def waits_and_deadlock() -> None:
    """The wait-for graph while runs block their slots, and a DeadlockError's report."""
    async with trioflow.open_local_cluster(1, 3) as cluster:
        async with trioflow.AsyncClient(cluster.address) as client:
            try:
                await client.submit(fib_no_secede, 4)
            except trioflow.DeadlockError:
                pass
            RELEASE.clear()
            futures = [client.submit(waits_on_held, key=f"waiter-{i}") for i in range(2)]

            def shoot() -> None:
                with chromium(1200, 900) as driver:
                    driver.get(cluster.dashboard_link)
                    wait_until(driver, lambda d: d.execute_script(
                        "return document.querySelectorAll('#waits text.waiter').length") == 2)
                    driver.execute_script("document.getElementById('waits-view')"
                                          ".scrollIntoView()")
                    driver.save_screenshot(str(HERE / "images" / "dashboard-waits.png"))

            await trio.to_thread.run_sync(shoot)
            RELEASE.set()
            await client.gather(futures)


async def main() -> None:
    async with trioflow.open_local_cluster(3, 2) as cluster:
        async with trioflow.AsyncClient(cluster.address) as client:
            done = threading.Event()

            def shoot() -> None:
                with chromium(1200, 1000) as driver:
                    driver.get(cluster.dashboard_link)
                    # some history in the stream, and tasks seceded while they wait
                    wait_until(driver, lambda d: d.execute_script(
                        "return Number(document.body.dataset.runs || 0) > 300 && "
                        "[...document.querySelectorAll('#workers td.seceded')]"
                        ".some(e => e.textContent !== '0') && "
                        "[...document.querySelectorAll('#workers td.threads')]"
                        ".every(e => e.textContent !== '?')"), timeout=60)
                    driver.execute_script("document.querySelector('#stream rect.run')"
                                          ".dispatchEvent(new MouseEvent('click'))")
                    driver.save_screenshot(str(HERE / "images" / "dashboard.png"))
                done.set()

            async def load() -> None:
                while not done.is_set():
                    await client.gather([client.submit(root, 4),
                                         *client.map(work, range(100, 160))])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(load)
                await trio.to_thread.run_sync(shoot)
                nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
    trio.run(waits_and_deadlock)
