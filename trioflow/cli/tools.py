"""``trioflow``: ``status`` (``--watch``, ``--task KEY``) and ``why`` against a running
cluster, and ``worker``/``scheduler`` as aliases of the two node commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import trio

from .common import EXIT_USAGE, address_or_usage_error, read_token, ssl_client_context


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``trioflow``: ``trioflow status ADDRESS [--task KEY]``,
    ``trioflow why ADDRESS KEY``, ``trioflow worker ...``, ``trioflow scheduler ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # each node command imports only its own modules: a scheduler process never loads the
    # worker's (engine, dask support), which is start-up time on every node
    if argv and argv[0] == "worker":
        from .worker import worker_main
        return worker_main(argv[1:])
    if argv and argv[0] == "scheduler":
        from .scheduler import scheduler_main
        return scheduler_main(argv[1:])
    parser = argparse.ArgumentParser(prog="trioflow", description="trioflow cluster tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="show workers, slots and tasks of a running cluster")
    st.add_argument("address")
    st.add_argument("--token-file", help="file holding the cluster token (or TRIOFLOW_TOKEN)")
    st.add_argument("--tls-ca", help="CA bundle to verify a wss:// scheduler")
    st.add_argument("--watch", action="store_true",
                    help="keep showing it, refreshed every --interval seconds, until Ctrl-C")
    st.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    st.add_argument("--count", type=int, default=0, help="with --watch: stop after this "
                    "many refreshes (default: never)")
    st.add_argument("--task", metavar="KEY", help="also say why task KEY has not finished")
    wh = sub.add_parser("why", help="say why a task has not finished (the chain of reasons)")
    wh.add_argument("address")
    wh.add_argument("key", help="the task's key (future.key)")
    wh.add_argument("--token-file", help="file holding the cluster token (or TRIOFLOW_TOKEN)")
    wh.add_argument("--tls-ca", help="CA bundle to verify a wss:// scheduler")
    sub.add_parser("worker", help="same as trioflow-worker")
    sub.add_parser("scheduler", help="same as trioflow-scheduler")
    args = parser.parse_args(argv)
    args.address = address_or_usage_error(f"trioflow {args.command}", args.address)
    if args.address is None:
        return EXIT_USAGE
    token = read_token(args.token_file)
    from ..client import AsyncClient

    if args.command == "status" and args.interval <= 0:
        parser.error(f"--interval must be > 0, got {args.interval}")
    key = args.key if args.command == "why" else args.task

    async def ask() -> None:
        ctx = ssl_client_context(args.tls_ca) if args.address.startswith("wss://") else None
        async with AsyncClient(args.address, token=token, name=args.command,
                               ssl_context=ctx) as client:
            if args.command == "why":
                with trio.fail_after(10):
                    print(await client.why(key), flush=True)
                return
            shown = 0
            while True:
                with trio.fail_after(10):
                    info = await client.status()
                    why = await client.why(key) if key else None
                text = format_status(info)
                if client.dashboard_link:
                    text += f"\ndashboard: {client.dashboard_link}"
                if why is not None:
                    text += "\n" + why
                if args.watch and sys.stdout.isatty():
                    text = "\x1b[H\x1b[2J" + text  # redraw in place
                print(text, flush=True)
                shown += 1
                if not args.watch or (args.count and shown >= args.count):
                    return
                await trio.sleep(args.interval)

    try:
        trio.run(ask)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _human(n: float) -> str:
    """Bytes for people: 532 B, 1.2 MB, 3.4 GB."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} GB"


def format_status(info: dict[str, Any]) -> str:
    lines = [f"{'worker':<20} {'slots':>5} {'busy':>5} {'blocked':>7} {'seceded':>7} "
             f"{'queued':>6} {'results':>7} {'bytes':>9}"]
    for w in info["workers"]:
        busy = min(w["occupying"], w["nthreads"])
        queued = max(0, w["occupying"] - w["nthreads"])
        lines.append(f"{w['name']:<20} {w['nthreads']:>5} {busy:>5} {w['blocked']:>7} "
                     f"{w['seceded']:>7} {queued:>6} {w['memory']:>7} "
                     f"{_human(w.get('bytes', 0)):>9}")
    tasks = info["tasks"].get("tasks", {})
    lines.append("tasks: " + (", ".join(f"{k} {v}" for k, v in sorted(tasks.items())) or "none"))
    return "\n".join(lines)
