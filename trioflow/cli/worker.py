"""``trioflow-worker``: one worker process, or ``--nworkers N`` of them under nannies;
reconnecting, draining on the first signal, and exit codes a nanny understands."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

import trio

from .. import config
from ..dask_integration import watch_for_dask
from ..errors import AuthenticationError, ClientClosedError, ProtocolVersionError
from ..net.addresses import is_loopback
from .common import (
    EXIT_INSECURE,
    EXIT_USAGE,
    address_or_usage_error,
    first_leaf,
    leaf,
    only,
    read_token,
    setup_logging,
    ssl_client_context,
    ssl_server_context,
    tune_gc,
)

logger = logging.getLogger(__name__)


def worker_main(argv: list[str] | None = None) -> int:
    """Entry point of ``trioflow-worker``."""
    parser = argparse.ArgumentParser(
        prog="trioflow-worker",
        description="Run a trioflow worker connected to the scheduler at ADDRESS "
        "(ws://host:port or wss://host:port).",
    )
    parser.add_argument("address", nargs="?", default=None,
                        help="the scheduler's address, as it printed it")
    parser.add_argument("--scheduler-file", default=None,
                        help="read the scheduler's address from this file (written by "
                        "trioflow-scheduler --scheduler-file), waiting for it to appear "
                        "up to --death-timeout")
    parser.add_argument("--nthreads", type=int, default=1, help="slots: tasks run at once (default 1)")
    parser.add_argument("--name", default=None, help="worker name (default: worker-PID)")
    parser.add_argument("--token-file", help="file holding the cluster token (or set TRIOFLOW_TOKEN)")
    parser.add_argument("--tls-ca", help="CA bundle to verify a wss:// scheduler and peers")
    parser.add_argument("--tls-cert", help="certificate (PEM) to serve our results over wss://")
    parser.add_argument("--tls-key", help="private key (PEM) for --tls-cert")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback --host without a token (do not do this)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface for serving results to other workers (default 127.0.0.1)")
    parser.add_argument("--max-parked-threads", type=int, default=config.MAX_PARKED_THREADS,
                        help="seceded threads allowed besides the slots (default 256)")
    parser.add_argument("--auto-secede", action="store_true",
                        help="give the slot back on every wait inside a task")
    parser.add_argument("--resources", default="",
                        help='abstract resources this worker offers, like "GPU=2,MEM=16e9" '
                        "(tasks ask for them with submit(..., resources={...}))")
    parser.add_argument("--death-timeout", type=float, default=config.DEATH_TIMEOUT,
                        help="seconds to keep trying to reach the scheduler before exiting")
    parser.add_argument("--connect-timeout", type=float, default=config.CONNECT_TIMEOUT,
                        help="seconds one connection attempt may take, up to the Welcome "
                        f"(default {config.CONNECT_TIMEOUT:g}; never more than what is left of "
                        "--death-timeout)")
    parser.add_argument("--peer-timeout", type=float, default=config.PEER_TIMEOUT,
                        help="seconds of silence after which the scheduler counts as lost")
    parser.add_argument("--drain-timeout", type=float, default=config.DRAIN_TIMEOUT,
                        help="on SIGTERM, seconds to let running tasks finish")
    parser.add_argument("--log-level", default="warning", help="debug, info, warning or error")
    parser.add_argument("--nworkers", type=int, default=None,
                        help="start N worker processes, each supervised: one that dies is "
                        "started again (names NAME-0 ... NAME-(N-1))")
    parser.add_argument("--no-nanny", action="store_true",
                        help="with --nworkers: do not restart workers that die")
    parser.add_argument("--no-reconnect", action="store_true",
                        help="when the scheduler connection ends, exit quietly with status "
                        f"{config.EXIT_RESTART} (a nanny's 'restart me') instead of "
                        "reconnecting (local clusters use this)")
    # set by a nanny: exits that restarting cannot help use EXIT_GIVE_UP (see nanny.py)
    parser.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser.add_argument("--memory-limit", default="0",
                        help="bytes (\"4GiB\", \"500MB\"), a fraction of the machine's "
                             "memory (0.5), \"auto\", or 0 for none (default); above its "
                             "fractions values spill to disk, runs pause, the worker exits "
                             f"with code {config.EXIT_RESTART}")
    parser.add_argument("--local-directory", default=None,
                        help="where values spill to (default: the system's temp directory)")
    args = parser.parse_args(argv)
    if args.nthreads < 1:
        parser.error(f"--nthreads must be >= 1, got {args.nthreads}")
    if args.nworkers is not None and args.nworkers < 1:
        parser.error(f"--nworkers must be >= 1, got {args.nworkers}")
    if args.no_nanny and args.nworkers is None:
        parser.error("--no-nanny goes with --nworkers (a plain trioflow-worker is not "
                     "supervised)")
    if (args.address is None) == (args.scheduler_file is None):
        parser.error("give the scheduler's ADDRESS or --scheduler-file (one of them)")
    if args.scheduler_file is not None:
        from ..net.scheduler_file import read_scheduler_file

        try:
            args.address = read_scheduler_file(args.scheduler_file, args.death_timeout)
        except (TimeoutError, ValueError, OSError) as exc:
            print(f"trioflow-worker: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    args.address = address_or_usage_error("trioflow-worker", args.address)
    if args.address is None:
        return EXIT_USAGE
    if args.nworkers is not None:
        setup_logging(args.log_level)
        return _supervise_workers(argv, args)
    from ..core.resource_spec import parse_resources

    try:
        resources = parse_resources(args.resources)
    except ValueError as exc:
        parser.error(f"--resources: {exc}")
    setup_logging(args.log_level)
    token = read_token(args.token_file)
    from ..net.worker_node import WorkerNode

    if not is_loopback(args.host) and token is None and not args.insecure:
        print(f"error: refusing to serve results on {args.host} without a token: anyone who "
              "can reach it could read them. Give --token-file or TRIOFLOW_TOKEN (or "
              "--insecure).", file=sys.stderr)
        return EXIT_INSECURE
    from ..net.memory import parse_memory_limit

    try:
        memory_limit = parse_memory_limit(args.memory_limit)
    except ValueError as exc:
        parser.error(str(exc))
    ssl_ctx = ssl_client_context(args.tls_ca) if (args.address.startswith("wss://")
                                                    or args.tls_ca) else None
    data_ctx = ssl_server_context(args.tls_cert, args.tls_key)

    def make_node() -> Any:
        return WorkerNode(args.address, nthreads=args.nthreads, name=args.name, token=token,
                          max_parked_threads=args.max_parked_threads,
                          auto_secede=args.auto_secede, host=args.host, ssl_context=ssl_ctx,
                          data_ssl_context=data_ctx, peer_timeout=args.peer_timeout,
                          memory_limit=memory_limit, local_directory=args.local_directory,
                          on_memory_terminate=_exit_for_memory,
                          resources=resources,
                          on_restart=_exit_for_memory if args.supervised else None)

    async def main() -> bool:
        stop = trio.Event()
        lost = False  # (stays False when a second signal cancels everything)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_signals_drain_then_cancel, stop, nursery.cancel_scope)
            lost = await _run_worker(make_node, args.death_timeout, args.drain_timeout, stop,
                                     connect_timeout=args.connect_timeout,
                                     reconnect=not args.no_reconnect)
            nursery.cancel_scope.cancel()
        return lost

    watch_for_dask()  # a task's dask.compute runs on this cluster (issue 14)
    tune_gc()  # (a worker process is ours; its tasks' imports come later, unfrozen)
    gave_up = config.EXIT_GIVE_UP if args.supervised else 1
    try:
        if trio.run(main):
            return config.EXIT_RESTART
    except BaseException as exc:  # Trio wraps errors from nurseries in groups
        refused = leaf(exc, AuthenticationError) or leaf(exc, ProtocolVersionError)
        if refused is not None:
            print(f"error: {refused}", file=sys.stderr)
            return gave_up
        slow = leaf(exc, trio.TooSlowError)
        if slow is not None:
            why = f": {first_leaf(slow.__cause__)}" if slow.__cause__ is not None else ""
            print(f"error: could not reach the scheduler at {args.address} within "
                  f"{args.death_timeout}s{why}", file=sys.stderr)
            return gave_up
        raise
    return 0


def _supervise_workers(argv: list[str], args: argparse.Namespace) -> int:
    """``--nworkers N``: run N ``trioflow-worker`` processes under nannies until a
    signal (SIGINT/SIGTERM are passed on as a drain; a second one kills them) or until
    every one has stopped.
    Exit status: 0 if every worker stopped cleanly, 1 otherwise."""
    from ..nanny import Nanny, RestartPolicy

    child_argv = _without_options(argv, {"--nworkers": 1, "--no-nanny": 0, "--name": 1})
    base = args.name or f"worker-{os.getpid()}"
    # a drain may last --drain-timeout: give it that long before SIGKILL
    grace = args.drain_timeout + config.NANNY_STOP_GRACE
    policy = (RestartPolicy(max_restarts=0, stop_grace=grace) if args.no_nanny
              else RestartPolicy(stop_grace=grace))
    nannies = [Nanny([sys.executable, "-m", "trioflow.cli", "worker", *child_argv,
                      "--name", f"{base}-{i}", "--supervised"], f"{base}-{i}", policy=policy)
               for i in range(args.nworkers)]

    async def signals(workers: trio.Nursery) -> None:
        # the first SIGINT/SIGTERM drains every worker (SIGTERM from its nanny); a
        # second one kills them at once
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
            async for signum in received:
                name = signal.Signals(signum).name
                if not workers.cancel_scope.cancel_called:
                    logger.info("received %s, stopping the workers", name)
                    workers.cancel_scope.cancel()
                    continue
                logger.warning("second %s: killing the workers", name)
                for nanny in nannies:
                    if nanny.process is not None and nanny.process.returncode is None:
                        nanny.process.kill()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as workers:
                nursery.start_soon(signals, workers)
                for nanny in nannies:
                    workers.start_soon(nanny.run)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return 0 if all(n.exits and n.exits[-1] == 0 for n in nannies) else 1


def _without_options(argv: list[str], options: dict[str, int]) -> list[str]:
    """``argv`` without the given options (name -> how many values follow it)."""
    out: list[str] = []
    skip = 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in options:
            skip = options[name] if "=" not in arg else 0
            continue
        out.append(arg)
    return out


def _exit_for_memory() -> None:
    """Over the memory limit's terminate fraction, or restarted by ``Client.restart``:
    exit now, "restart me" (there may be no memory left for an orderly stop; segments and
    spill files are removed at the next start, see net/shm.py and net/memory.py)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(config.EXIT_RESTART)


async def _signals_drain_then_cancel(stop: trio.Event, scope: trio.CancelScope) -> None:
    """First SIGINT/SIGTERM: drain (finish running tasks, hand back queued ones).
    A second one: stop at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if stop.is_set():
                logger.warning("second %s: stopping now", signal.Signals(signum).name)
                scope.cancel()
                return
            logger.info("%s: draining (again to stop now)", signal.Signals(signum).name)
            stop.set()


#: seconds before the first retry of a refused connection, doubled after each (up to 1 s):
#: a worker started with its scheduler (a deployment with a known port, a benchmark's
#: cluster) is often ready a few milliseconds before the scheduler listens, and a refused
#: connect on a reachable host costs well under a millisecond
FIRST_RETRY = 0.005


async def _run_worker(make_node: Any, death_timeout: float, drain_timeout: float,
                      stop: trio.Event, *, connect_timeout: float = config.CONNECT_TIMEOUT,
                      reconnect: bool = True) -> bool:
    """Serve the scheduler; reconnect (fresh state) after losing it, for up to
    ``death_timeout`` seconds without a connection; drain when ``stop`` is set.

    Each attempt, up to the scheduler's Welcome, has ``connect_timeout`` seconds, and
    never more than what is left of ``death_timeout``: a scheduler that resets, accepts
    and never answers (hung, SIGSTOPped) or answers garbage costs one attempt, not the
    worker.
    ``stop`` is honoured at any point, while connecting and between attempts too.

    Without ``reconnect``, losing an established connection ends it instead: returns
    True (False when it stopped on ``stop``). A local cluster's workers run this way,
    so a worker whose scheduler went away with its program leaves quietly, and its
    nanny (if the program is still there) starts a fresh one.

    Raises:
        trio.TooSlowError: no connection for ``death_timeout`` seconds.
        AuthenticationError: the scheduler refused our token (retrying cannot help).
        ProtocolVersionError: the scheduler speaks no protocol version we do.
    """
    from trio_websocket import HandshakeError

    from ..errors import RemoteProtocolError

    deadline = trio.current_time() + death_timeout
    delay = FIRST_RETRY
    while not stop.is_set():
        node = make_node()
        attempt_deadline = min(trio.current_time() + connect_timeout, deadline)
        try:
            await _serve_once(node, stop, drain_timeout, attempt_deadline)
        except BaseException as exc:
            if not only(exc, (OSError, HandshakeError, ClientClosedError,
                               RemoteProtocolError)) or leaf(exc, ProtocolVersionError):
                # a wrong token or protocol version: retrying cannot help
                raise
            if not reconnect and node.peer_id:
                logger.info("lost the scheduler (%s); exiting", first_leaf(exc))
                return True
            if trio.current_time() >= deadline:
                raise trio.TooSlowError from exc
            logger.info("scheduler not reachable (%s); retrying", first_leaf(exc))
            with trio.move_on_at(min(trio.current_time() + delay, deadline)):
                await stop.wait()
            if not stop.is_set() and trio.current_time() >= deadline:
                raise trio.TooSlowError from exc  # this failure, not an attempt of 0 s
            delay = min(delay * 2, 1.0)
            continue
        delay = FIRST_RETRY
        deadline = trio.current_time() + death_timeout
        if not stop.is_set():
            if not reconnect:
                logger.info("lost the scheduler; exiting")
                return True
            logger.warning("lost the scheduler; reconnecting for up to %ss", death_timeout)
    return False


async def _serve_once(node: Any, stop: trio.Event, drain_timeout: float,
                      attempt_deadline: float = float("inf")) -> None:
    """One connection's life: returns when it ends, or after draining on ``stop``
    (which may come before the connection is up: then the attempt is simply cancelled).

    Raises:
        ClientClosedError: no Welcome by ``attempt_deadline``.
    """
    async with trio.open_nursery() as nursery:

        async def serve(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await node.serve(task_status=task_status)
            nursery.cancel_scope.cancel()

        async def drain_on_stop() -> None:
            await stop.wait()
            await node.drain(drain_timeout)  # returns at once if not connected yet
            nursery.cancel_scope.cancel()

        nursery.start_soon(drain_on_stop)
        # until it calls started() (at the Welcome) the serve task runs under this
        # scope, so the deadline covers the whole attempt and nothing after it
        with trio.move_on_at(attempt_deadline) as attempt:
            await nursery.start(serve)
        if attempt.cancelled_caught:
            raise ClientClosedError("the scheduler did not welcome us in time "
                                    "(--connect-timeout, or what was left of --death-timeout)")
