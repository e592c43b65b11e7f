"""The dashboard's HTTP server: a Starlette app on Hypercorn's Trio worker, in the
scheduler's own Trio program, on a port of its own.

Routes (all read-only, all behind the token when the scheduler has one):

* ``/`` — the page (``static/index.html``; it draws with plain SVG, see ``dashboard.js``);
* ``/events`` — server-sent events: a full snapshot on connect, then one every
  ``interval`` seconds while anyone is connected (nothing is computed while no one is);
* ``/api/snapshot`` — the same snapshot as JSON, with the kept task stream;
* ``/api/why?key=K`` — why task K has not finished (the core's ``explain``), as JSON;
* ``/metrics`` — Prometheus text (:mod:`.metrics`).

Security. Names and error texts shown are user strings: the page only ever sets
``textContent``, and a Content-Security-Policy forbids inline scripts as a second wall.
With a token, a request must carry it (``?token=``, which sets an HttpOnly cookie and
redirects to a clean URL; the cookie; or ``Authorization: Bearer``) or gets a bare 401.
Without a token the dashboard serves loopback only and checks the ``Host`` header,
so a web page cannot read it through DNS rebinding.

Cancellation: cancelling ``serve`` closes every connection and stops listening.
"""

from __future__ import annotations

import hmac
import json
import logging
import sys
import time
from functools import partial
from importlib import resources
from typing import TYPE_CHECKING, Any

import trio

# Hypercorn, Starlette (and prometheus_client, in ``metrics``) are imported where they
# are first used, not here: together they are a quarter of ``import trioflow`` (about
# 50 ms), which every worker and scheduler process pays at startup and most never
# serve a dashboard.
if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import DASHBOARD_INTERVAL
from ..core.scheduler.explain import explain
from ..net.addresses import is_loopback
from ..net.scheduler_server import SchedulerServer
from .metrics import CONTENT_TYPE, metrics_text, registry_for
from .snapshot import Observer

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

logger = logging.getLogger(__name__)

COOKIE = "trioflow_token"
#: longest key ``/api/why`` explains (keys are user strings; the answer is bounded anyway)
MAX_KEY_LENGTH = 1000
#: a second wall behind textContent: no inline script, nothing from elsewhere
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
STATIC = {"index.html": "text/html; charset=utf-8",
          "dashboard.js": "text/javascript; charset=utf-8",
          "dashboard.css": "text/css; charset=utf-8"}


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:port"``, ``":port"``) -> (host, port).

    Raises:
        ValueError: not of that form; says what was given.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"a dashboard address is HOST:PORT (port 0 picks a free one), "
                         f"got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class Dashboard:
    """The live dashboard of ``scheduler``.

    Args:
        scheduler: the server whose state is shown; its token guards the dashboard, and
            its Welcome tells peers the dashboard's address.
        interval: seconds between pushed updates.
        insecure: allow serving a non-loopback address without a token.

    Use ``await nursery.start(dashboard.serve, host, port)``; it returns the address.
    """

    def __init__(self, scheduler: SchedulerServer, *, interval: float = DASHBOARD_INTERVAL,
                 insecure: bool = False) -> None:
        self.scheduler = scheduler
        self.token = scheduler.token
        self.interval = interval
        self.insecure = insecure
        self.observer = Observer(scheduler.state)
        self.registry = registry_for(self.observer)
        self.address = ""
        self._static = {name: (resources.files(__package__) / "static" / name).read_bytes()
                        for name in STATIC}
        self._subscribers = 0
        self._sent = 0  # the ticker's stream cursor
        self._message = b""
        self._published = trio.Event()
        self._host_check = True
        #: CPU seconds spent making and encoding snapshots and metrics (the benchmark's measure)
        self.cost = 0.0
        from starlette.applications import Starlette
        from starlette.routing import Route

        routes = [Route("/", self._page), Route("/events", self._events),
                  Route("/api/snapshot", self._snapshot), Route("/api/why", self._why),
                  Route("/metrics", self._metrics),
                  *(Route(f"/static/{name}", partial(self._file, name)) for name in STATIC)]
        self.app: ASGIApp = _Guard(Starlette(routes=routes), self)

    def __repr__(self) -> str:
        return f"<Dashboard {self.address or 'not serving'} subscribers={self._subscribers}>"

    @property
    def link(self) -> str:
        """The address to open (with the token in the query when there is one)."""
        return link(self.address, self.token)

    async def serve(self, host: str = "127.0.0.1", port: int = 0, *,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started(address)``.

        Raises:
            ValueError: ``host`` is not loopback, there is no token and not ``insecure``.
            OSError: the address cannot be bound.
        """
        if not is_loopback(host) and self.token is None and not self.insecure:
            raise ValueError(f"refusing to serve the dashboard on {host} without a token: "
                             "anyone who can reach it would see task names and errors. "
                             "Give the scheduler a token, or serve it on loopback.")
        self._host_check = self.token is None and is_loopback(host)
        import hypercorn.trio
        from hypercorn.config import Config as HypercornConfig

        cfg = HypercornConfig()
        cfg.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        cfg.accesslog = None
        cfg.errorlog = logging.getLogger(f"{__name__}.http")
        cfg.graceful_timeout = 0.5
        try:
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(partial(hypercorn.trio.serve, self.app, cfg))  # type: ignore[arg-type]
                self.address = binds[0]
                self.scheduler.dashboard_address = self.address
                nursery.start_soon(self._ticker)
                logger.info("dashboard at %s", self.address)
                task_status.started(self.address)
        except BaseExceptionGroup as group:
            # cannot bind: the OSError itself, not the nurseries' wrapping of it (so a
            # caller can fall back to another port)
            failure = _only_leaf(group)
            if not self.address and isinstance(failure, OSError):
                raise failure from None
            raise

    # ------------------------------------------------------------------ pushing

    async def _ticker(self) -> None:
        """One snapshot per interval, shared by every connected page; none while no
        page is connected."""
        while True:
            await trio.sleep(self.interval)
            if self._subscribers:
                t0 = time.thread_time()
                snap = self.observer.snapshot(time.time(), since=self._sent)
                self._sent = snap["folded"]
                self._message = _event(snap)
                self.cost += time.thread_time() - t0
                published, self._published = self._published, trio.Event()
                published.set()

    async def _events(self, request: Request) -> Response:
        async def stream() -> Any:
            self._subscribers += 1
            try:
                yield _event(self.observer.snapshot(time.time(), since=0))
                while True:
                    await self._published.wait()
                    yield self._message
            finally:
                self._subscribers -= 1

        from starlette.responses import StreamingResponse

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={**SECURITY_HEADERS, "x-accel-buffering": "no"})

    # ------------------------------------------------------------------ the rest

    async def _page(self, request: Request) -> Response:
        return self._file("index.html", request)

    def _file(self, name: str, request: Request) -> Response:
        from starlette.responses import Response

        return Response(self._static[name], media_type=STATIC[name], headers=SECURITY_HEADERS)

    async def _snapshot(self, request: Request) -> Response:
        from starlette.responses import Response

        snap = self.observer.snapshot(time.time(), since=0)
        return Response(json.dumps(snap, separators=(",", ":")).encode(),
                        media_type="application/json", headers=SECURITY_HEADERS)

    async def _why(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse, Response

        key = request.query_params.get("key", "")
        if not key or len(key) > MAX_KEY_LENGTH:
            return PlainTextResponse(f"give ?key= (a task key of at most {MAX_KEY_LENGTH} "
                                     "characters)\n", 400, headers=SECURITY_HEADERS)
        body = {"key": key, "why": explain(self.scheduler.state, key)}
        return Response(json.dumps(body).encode(), media_type="application/json",
                        headers=SECURITY_HEADERS)

    async def _metrics(self, request: Request) -> Response:
        from starlette.responses import Response

        t0 = time.thread_time()
        text = metrics_text(self.registry)
        self.cost += time.thread_time() - t0
        return Response(text, media_type=CONTENT_TYPE, headers=SECURITY_HEADERS)


def _only_leaf(exc: BaseException) -> BaseException | None:
    """The one exception inside (nested) exception groups, or None if there are more."""
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


def link(address: str, token: str | None) -> str:
    """The URL a person opens: ``address/``, with ``?token=`` when there is one."""
    if not address:
        return ""
    return f"{address}/?token={token}" if token else f"{address}/"


def _event(snap: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(snap, separators=(",", ":")).encode() + b"\n\n"


class _Guard:
    """The token (or, without one, the Host header) before anything else is served."""

    def __init__(self, app: ASGIApp, dashboard: Dashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse, RedirectResponse

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        token = self.dashboard.token
        if token is None:
            if self.dashboard._host_check and not is_loopback(request.url.hostname or ""):
                # DNS rebinding: a page from elsewhere reaching our loopback port
                await PlainTextResponse("forbidden host\n", 403)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        given = request.query_params.get("token")
        if given is not None and _same(given, token):
            # keep the token out of the address bar and of later links: a cookie
            response = RedirectResponse(request.url.path, status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        header = request.headers.get("authorization", "")
        if _same(request.cookies.get(COOKIE, ""), token) or (
                header.startswith("Bearer ") and _same(header[7:], token)):
            await self.app(scope, receive, send)
            return
        await PlainTextResponse("401: this dashboard needs the cluster token "
                                "(open the link the client prints)\n", 401,
                                headers={"www-authenticate": "Bearer"})(scope, receive, send)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
