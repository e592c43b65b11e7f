"""``trioflow-scheduler``: a scheduler process (and its dashboard) until a signal."""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from .. import config
from ..net.addresses import is_loopback
from .common import (
    EXIT_INSECURE,
    read_token,
    setup_logging,
    ssl_server_context,
    tune_gc,
    until_signal,
)

logger = logging.getLogger(__name__)


def scheduler_main(argv: list[str] | None = None) -> int:
    """Entry point of ``trioflow-scheduler``."""
    parser = argparse.ArgumentParser(
        prog="trioflow-scheduler",
        description="Run a trioflow scheduler. It listens on loopback unless --host says "
        "otherwise; any other address needs a token (--token-file or TRIOFLOW_TOKEN) "
        "or --insecure. Prints its address on stdout once listening.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8786, help="port (default 8786; 0 picks a free one)")
    parser.add_argument("--token-file", help="file holding the cluster token (or set TRIOFLOW_TOKEN)")
    parser.add_argument("--tls-cert", help="certificate (PEM) to serve wss://")
    parser.add_argument("--tls-key", help="private key (PEM) for --tls-cert")
    parser.add_argument("--peer-timeout", type=float, default=config.PEER_TIMEOUT,
                        help="drop peers silent (not even a heartbeat) for this many seconds")
    parser.add_argument("--allowed-failures", type=int, default=config.ALLOWED_FAILURES,
                        help="worker deaths a task may see before it fails with KilledWorker")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback address without a token (do not do this)")
    parser.add_argument("--dashboard-address", default=config.DASHBOARD_ADDRESS,
                        help="HOST:PORT of the live dashboard (default "
                        f"{config.DASHBOARD_ADDRESS}; a taken default port falls back to a "
                        "free one; off loopback it needs the token); 'none' for no dashboard")
    parser.add_argument("--no-workers-timeout", type=float, default=config.NO_WORKERS_TIMEOUT,
                        help="fail a task with NoWorkersError when no connected worker could "
                        "run it for this many seconds (default "
                        f"{config.NO_WORKERS_TIMEOUT:g}; 0 or inf: wait forever)")
    parser.add_argument("--scheduler-file", default=None,
                        help="also write where it listens into this file (JSON, as dask's), "
                        "for `trioflow-worker --scheduler-file` and "
                        "`Client(scheduler_file=...)`")
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    token = read_token(args.token_file)
    board_address = None if args.dashboard_address.lower() == "none" else args.dashboard_address
    if board_address is not None:
        from ..dashboard.server import Dashboard, parse_address
        try:
            board_host, board_port = parse_address(board_address)
        except ValueError as exc:
            parser.error(str(exc))
        if not is_loopback(board_host) and token is None and not args.insecure:
            print(f"error: refusing to serve the dashboard on {board_host} without a token: "
                  "anyone who can reach it would see task names and errors. Give "
                  "--token-file or TRIOFLOW_TOKEN (or --insecure).", file=sys.stderr)
            return EXIT_INSECURE
    if not is_loopback(args.host) and token is None and not args.insecure:
        print(f"error: refusing to listen on {args.host} without a token: anyone who can reach "
              "it could run code here. Give --token-file or TRIOFLOW_TOKEN (or --insecure).",
              file=sys.stderr)
        return EXIT_INSECURE
    from ..net.scheduler_server import SchedulerServer

    failed: list[OSError] = []

    async def main() -> None:
        server = SchedulerServer(token=token, peer_timeout=args.peer_timeout,
                                 allowed_failures=args.allowed_failures,
                                 no_workers_timeout=args.no_workers_timeout,
                                 ssl_context=ssl_server_context(args.tls_cert, args.tls_key))
        async with trio.open_nursery() as nursery:
            if board_address is not None:
                board = Dashboard(server, insecure=args.insecure)
                try:
                    await nursery.start(board.serve, board_host, board_port)
                except OSError as exc:
                    if args.dashboard_address != config.DASHBOARD_ADDRESS:
                        print(f"error: cannot serve the dashboard on {board_address}: {exc}",
                              file=sys.stderr)
                        failed.append(exc)
                        return
                    logger.warning("dashboard port %s is taken (%s); using a free one",
                                   board_port, exc)
                    await nursery.start(board.serve, board_host, 0)
                logger.info("dashboard at %s", board.address)
            address = await nursery.start(server.serve, args.host, args.port)
            if args.scheduler_file:
                from ..net.scheduler_file import write_scheduler_file

                write_scheduler_file(args.scheduler_file, address, server.state.scheduler_id,
                                     board.address if board_address is not None else "")
            print(address, flush=True)
            nursery.start_soon(until_signal, nursery)

    tune_gc()  # (this process is ours: everything it needs is imported by now)
    try:
        trio.run(main)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0
