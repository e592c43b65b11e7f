"""Launch tasks from results, option 1: bring the data back, then submit from the client.

What it shows:
    One task produces a list whose length nobody knows in advance. The client gathers
    that list (it is small), maps a task over its elements, and submits one more task
    that aggregates their results. The aggregate receives the *values* of the mapped
    futures: passing a list of futures to ``submit`` makes them dependencies.

    This is the first, and simplest, flow of "Tasks that launch tasks"
    (docs/tasks-from-tasks.md). Use it when the data is small enough to travel to the
    client; when it is not, see len_then_getitem.py.

Run:
    python examples/gather_locally.py                       # a local cluster
    python examples/gather_locally.py --scheduler ws://127.0.0.1:8786

Try:
    * make ``download_and_split`` return thousands of words and watch the client-side
      round trip still cost only milliseconds;
    * replace ``client.submit(aggregate, futures)`` by ``sum(client.gather(futures))``:
      same answer, but now the partial results all travel to the client.
"""

from __future__ import annotations

import argparse

import trioflow

TEXT = """
A scheduler hands out work, workers run it, and clients ask for it. When a task needs
other tasks, it may launch them itself, or a client may launch them after looking at
what came back.
"""


def download_and_split(source: str) -> list[str]:
    """Stands for "download the data and turn it into a list" (here: split a text)."""
    return [word.strip(".,").lower() for word in source.split()]


def process_element(word: str) -> int:
    """Work on one element: count its vowels."""
    return sum(letter in "aeiou" for letter in word)


def aggregate(counts: list[int]) -> int:
    return sum(counts)


def main() -> int:
    client = trioflow.get_client()

    future = client.submit(download_and_split, TEXT)
    data = future.result()  # the list comes back to this process
    print(f"gathered {len(data)} elements locally; the first ones: {data[:4]}")

    futures = client.map(process_element, data)  # one task per element
    analysis = client.submit(aggregate, futures)  # runs once all of them are done
    total = analysis.result()

    expected = sum(process_element(w) for w in download_and_split(TEXT))
    assert total == expected, (total, expected)
    print(f"vowels counted by {len(futures)} tasks: {total}")
    return total


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="use the running scheduler at ADDRESS (ws://host:port) instead "
                             "of starting a local cluster; set TRIOFLOW_TOKEN if it has a token")
    args = parser.parse_args()
    trioflow.run(main, address=args.scheduler, workers=2, threads_per_worker=1)
