"""The dashboard in a real browser (headless Chromium through selenium): it renders the
cluster, updates while work runs, shows hostile names as text, and shows nothing
without the token."""

from __future__ import annotations

import threading
import time

import pytest
import trio

import trioflow

from .browser import chromium, chromium_on_loop, require_browser, wait_until
from .conftest import cluster_client
from .tasks import fib_no_secede, inc

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _browser():
    require_browser()


def slow_inc(x):
    time.sleep(0.005)
    return x + 1


def text(driver, css):
    """The text of every element matching ``css``, read in one script (the page
    rebuilds its tables on every update: elements found earlier may be gone)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", css)


async def test_the_page_renders_and_updates_while_work_runs():
    async with cluster_client(2, 2) as (cluster, client):
        kept = client.map(inc, range(30))
        await client.gather(kept)
        stop = threading.Event()

        def browse():
            with chromium() as driver:
                driver.get(cluster.dashboard_link)
                wait_until(driver, lambda d: len(text(d, "#workers tbody tr")) == 2)
                assert sorted(t.split()[0] for t in text(driver, "#workers td.name")) == [
                    "worker-0", "worker-1"]
                wait_until(driver, lambda d: "inc" in text(d, "#progress td.name"))
                # the workers' own reports arrive within a second: threads, memory
                wait_until(driver, lambda d: "?" not in text(d, "#workers td.threads"))
                assert text(driver, "#stream rect.run title")
                assert text(driver, "#tree g.node text")
                # it moves: the finished-run count grows while the work below runs
                first = int(wait_until(driver, runs))
                wait_until(driver, lambda d: int(runs(d)) > first + 20)
                stop.set()
                return text(driver, "#summary")[0]

        async def work():
            while not stop.is_set():
                await client.gather(client.map(slow_inc, range(20)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(work)
            summary = await trio.to_thread.run_sync(browse)
            stop.set()
        assert "2 workers" in summary


def runs(driver):
    return driver.execute_script("return document.body.dataset.runs")


HOSTILE = ['<script>alert(1)</script>', '<img src=x onerror="window.__pwned=1">']


async def test_hostile_names_are_shown_as_text():
    async with cluster_client(1, 1) as (cluster, client):
        kept = [client.submit(inc, i, key=k) for i, k in enumerate(HOSTILE)]
        await client.gather(kept)

        def browse():
            with chromium() as driver:
                driver.get(cluster.dashboard_link)
                names = wait_until(driver, lambda d: (lambda t: t if set(HOSTILE) <= set(t)
                                                      else None)(text(d, "#progress td.name")))
                assert set(HOSTILE) <= set(names)
                # nothing ran: no alert, no handler fired, no element was made of them
                assert driver.execute_script("return window.__pwned === undefined")
                assert driver.execute_script(
                    "return document.querySelectorAll('script').length") == 1
                assert driver.execute_script("return document.querySelectorAll('img').length") == 0
                # a clicked run shows its key as text
                driver.execute_script("document.querySelector('#stream rect.run')"
                                      ".dispatchEvent(new MouseEvent('click'))")
                details = text(driver, "#details")[0]
                assert details.startswith("key ") and "worker worker-0" in details
                titles = driver.execute_script(
                    "return [...document.querySelectorAll('#stream rect.run title')]"
                    ".map(t => t.textContent)")
                assert any(HOSTILE[0] in t for t in titles)

        await trio.to_thread.run_sync(browse)


async def test_without_the_token_the_browser_sees_nothing():
    async with trioflow.open_local_cluster(1, 1, token="t0ken") as cluster:
        def browse():
            with chromium() as driver:
                driver.get(cluster.dashboard.address + "/")
                body = text(driver, "body")[0]
                assert "401" in body and "needs the cluster token" in body
                assert not driver.find_elements("id", "workers")
                driver.get(cluster.dashboard_link)  # the link carries the token
                wait_until(driver, lambda d: len(text(d, "#workers tbody tr")) == 1)
                assert "token" not in driver.current_url  # it moved into a cookie

        await trio.to_thread.run_sync(browse)


RELEASE = threading.Event()


def held():
    RELEASE.wait(30)
    return 1


def waits_on_held():
    client = trioflow.get_client()
    return client.submit(held, key="held-1").result() + 1  # no secede: a blocked slot


async def test_the_wait_for_graph_and_the_deadlock_report():
    RELEASE.clear()
    async with cluster_client(1, 2) as (cluster, client):
        fut = client.submit(waits_on_held, key="waiter-1")
        with chromium_on_loop() as browse:
            def see_the_wait(driver):
                driver.get(cluster.dashboard_link)
                wait_until(driver, lambda d: text(d, "#waits text.waiter") == ["waiter-1"])
                assert text(driver, "#waits text.awaited") == ["held-1"]
                # a click asks the scheduler why
                driver.execute_script("document.querySelector('#waits text.waiter')"
                                      ".dispatchEvent(new MouseEvent('click'))")
                wait_until(driver, lambda d: "held-1" in text(d, "#why")[0]
                           and "asking" not in text(d, "#why")[0])
                assert text(driver, "#workers span.slots")[0].strip().startswith("1 · 1 ·")

            await browse(see_the_wait)
            RELEASE.set()
            assert await fut == 2
            with pytest.raises(trioflow.DeadlockError):
                await client.submit(fib_no_secede, 4)

            def see_the_report(driver):
                wait_until(driver, lambda d: "holds a slot on worker" in text(d, "#deadlock")[0])
                assert text(driver, "#deadlock-count") == ["(1 raised)"]
                wait_until(driver, lambda d: "no run is blocked" in text(d, "#waits")[0])

            await browse(see_the_report)
