"""Launch tasks from results, option 2: fetch only the length, split the data remotely.

What it shows:
    The data is too big to bring back to the client (here about 1.9 MB pickled, far
    over the 64 KiB up to which results travel inline), so it stays on the worker that
    made it. The client asks the cluster for ``len(data)``, gathers that one small
    number, then submits ``operator.getitem(data, i)`` for each element, one task per
    part, and an aggregation at the end. Only a few bytes reach the client, and the
    parts are processed where the data is when that worker has room (a task prefers the
    worker holding most bytes of its inputs; otherwise its inputs are fetched from that
    worker directly, never through the scheduler).

    This is the second flow of "Tasks that launch tasks" (docs/tasks-from-tasks.md).

Run:
    python examples/len_then_getitem.py
    python examples/len_then_getitem.py --scheduler ws://127.0.0.1:8786

Try:
    * raise ``--chunks``: the number of tasks follows the data, which the client learns
      from one remote ``len``;
    * print ``data.result()`` and time it: that is the transfer this flow avoids.
"""

from __future__ import annotations

import argparse
import operator

import trioflow

CHUNK_SIZE = 50_000


def make_dataset(n_chunks: int) -> list[list[int]]:
    """Stands for "download a large data set": a list of chunks, each a list of ints."""
    return [list(range(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE)) for i in range(n_chunks)]


def summarize(chunk: list[int]) -> int:
    """Work on one part of the data."""
    return sum(x % 7 for x in chunk)


def combine(partials: list[int]) -> int:
    return sum(partials)


def main(n_chunks: int) -> int:
    client = trioflow.get_client()

    data = client.submit(make_dataset, n_chunks)  # stays on the worker that computes it
    n = client.submit(len, data).result()  # only this small number comes back
    print(f"the data has {n} elements and stays remote: {data!r}")

    elements = [client.submit(operator.getitem, data, i) for i in range(n)]  # split it
    partials = client.map(summarize, elements)
    analysis = client.submit(combine, partials)
    total = analysis.result()

    expected = sum(x % 7 for x in range(n_chunks * CHUNK_SIZE))
    assert total == expected, (total, expected)
    print(f"{n} parts summarized remotely: total {total}")
    return total


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=8, help="elements in the data (default 8)")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="use the running scheduler at ADDRESS (ws://host:port) instead "
                             "of starting a local cluster; set TRIOFLOW_TOKEN if it has a token")
    args = parser.parse_args()
    trioflow.run(main, args.chunks, address=args.scheduler, workers=2, threads_per_worker=1)
