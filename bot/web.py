"""The bot's one HTTP server (aiohttp): health, readiness, metrics; chat webhooks and
Alertmanager register their routes here.

A slow or idle client cannot hold the server: every connection lives under these
limits (defaults below; each is a constructor argument of :class:`WebServer`).

* ``HEADER_TIMEOUT`` — a request's line and headers must be complete this long after
  the connection opened, or, on a kept-alive connection, after the request's first
  byte; else the connection is closed without an answer.
* ``BODY_TIMEOUT`` — the whole body must have arrived this long after the headers,
  else ``408`` and the connection is closed (a 1 KB/s trickle is cut here).
* ``KEEPALIVE_TIMEOUT`` — an idle kept-alive connection is closed after this long.
* ``LINGER_TIMEOUT`` — after an answer given before the body was read (a refusal), the
  rest of the body is drained for at most this long, then the connection is closed.
* ``MAX_CONNECTIONS`` — open connections at once; one more is answered ``503`` with
  ``Retry-After`` and closed at once (nothing waits in a queue).
* ``MAX_LINE_SIZE``, ``MAX_FIELD_SIZE``, ``MAX_HEADERS`` — request line and header
  sizes (aiohttp answers 400 beyond them); ``CLIENT_MAX_SIZE`` — bodies read whole
  (Slack, Telegram); Alertmanager reads its own, larger bodies up to its own cap.
* A body with a ``Content-Encoding`` (gzip, deflate, …) is refused with ``415``: no
  webhook sender compresses, and nothing is ever decompressed (no zip bombs).

``pira_http_connections_cut_total{reason}`` counts the connections cut by each limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

log = logging.getLogger("pira.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HEADER_TIMEOUT = 10.0  # seconds for a request's line and headers
BODY_TIMEOUT = 30.0  # seconds for a request's whole body, from the end of its headers
KEEPALIVE_TIMEOUT = 75.0  # seconds an idle kept-alive connection stays open
LINGER_TIMEOUT = 5.0  # seconds an unread body is drained after an early answer
MAX_CONNECTIONS = 256  # open at once; beyond: 503 and closed
MAX_LINE_SIZE = 8190  # bytes of the request line
MAX_FIELD_SIZE = 8190  # bytes of one header
MAX_HEADERS = 100  # headers in one request
CLIENT_MAX_SIZE = 1024 * 1024  # bytes of a body read whole (request.read/text/json)
BACKLOG = 128  # connections the kernel queues before the server accepts them
_WARN_EVERY = 60.0  # seconds between two warnings of one kind (an attack is one line a minute)

_BUSY_BODY = b'{"error": "too many connections; retry"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)


class BodyTimeout(TimeoutError):
    """The request body did not arrive within the body deadline.

    A ``TimeoutError``, so aiohttp's draining of an unread body stops quietly on it."""


class _Limits:
    """The limits in force and what cutting a connection reports (metrics, warnings)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        header_timeout: float,
        body_timeout: float,
        max_connections: int,
    ) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.cut = Counter(
            "pira_http_connections_cut",
            "HTTP connections cut by a limit (too_many, header_timeout, body_timeout).",
            ["reason"],
            registry=registry,
        )
        self._warned: dict[str, float] = {}

    def report(self, reason: str, message: str) -> None:
        self.cut.labels(reason).inc()
        now = time.monotonic()
        if now - self._warned.get(reason, -_WARN_EVERY) >= _WARN_EVERY:
            self._warned[reason] = now
            log.warning(message, extra={"reason": reason})


class _Connection(web.RequestHandler):
    """aiohttp's connection handler plus a header deadline and the connection limit.

    The header deadline runs from the connection's opening, and on a kept-alive
    connection from the first byte after a request was handled; the middleware of
    :class:`WebServer` stops it when a request reaches the application."""

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        limits: _Limits,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._server = manager
        self._event_loop = loop
        self._limits = limits
        self._between_requests = True
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if len(self._server.connections) > self._limits.max_connections:
            self._limits.report("too_many", "http connection refused: too many connections")
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_BUSY)
            self.force_close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._between_requests and self._header_timer is None:
            self._arm()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def request_started(self) -> None:
        """Headers complete, the application has the request: no header deadline."""
        self._between_requests = False
        self._disarm()

    def request_done(self) -> None:
        """The application is done; the next byte starts the next header deadline."""
        self._between_requests = True

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError | web.RequestPayloadError):
            # A malformed request (bad header bytes, an oversized line, a body that does not
            # decode) is the client's doing: one line, no traceback, and nothing of what it
            # sent (it may hold a secret).
            log.info("http request refused: malformed", extra={"error": type(exc).__name__})
            return
        super().log_exception(*args, **kwargs)

    def _arm(self) -> None:
        self._header_timer = self._event_loop.call_later(
            self._limits.header_timeout, self._headers_overdue
        )

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if self._between_requests:
            self._limits.report(
                "header_timeout", "http connection closed: request headers not received in time"
            )
            self.force_close()


class WebServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        ping: Callable[[], Awaitable[None]],
        render_metrics: Callable[[], Awaitable[bytes]] | None = None,
        leading: Callable[[], bool] = lambda: False,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        linger_timeout: float = LINGER_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.ping = ping  # raises when the database cannot be reached (/readyz)
        self.leading = leading  # whether this replica leads (said by /readyz)
        self.registry = registry
        # GET /metrics: the registry's exposition made off the event loop (its
        # collectors may query the database, bot/metrics.py); None: made here, inline.
        self.render_metrics = render_metrics
        self.limits = _Limits(
            registry,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            max_connections=max_connections,
        )
        self.keepalive_timeout = keepalive_timeout
        self.linger_timeout = linger_timeout
        self.web = web.Application(client_max_size=CLIENT_MAX_SIZE, middlewares=[self._deadlines])
        self.web.router.add_get("/healthz", self.healthz)
        self.web.router.add_get("/readyz", self.readyz)
        self.web.router.add_get("/metrics", self.metrics)
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self.ready = False

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.web.router.add_route(method, path, handler)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.json_response({"status": "starting"}, status=503)
        try:
            await self.ping()
        except Exception as exc:
            return web.json_response(
                {"status": "database unavailable", "error": type(exc).__name__}, status=503
            )
        # Every healthy replica is ready (all serve HTTP); the body says which leads.
        return web.json_response({"status": "ready", "leader": self.leading()})

    async def metrics(self, request: web.Request) -> web.Response:
        if self.render_metrics is not None:
            body = await self.render_metrics()
        else:
            body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # ---- limits ----------------------------------------------------------------

    @web.middleware
    async def _deadlines(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        connection = request.protocol
        if isinstance(connection, _Connection):
            connection.request_started()
        try:
            if not request.body_exists:
                return await handler(request)
            encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                # No webhook sender compresses; not decompressing means no zip bomb and no
                # stream that never ends (aiohttp's deflate waits forever on some garbage).
                return web.json_response(
                    {"error": "compressed request bodies are not accepted"}, status=415
                )
            return await self._within_body_deadline(request, handler)
        finally:
            if isinstance(connection, _Connection):
                connection.request_done()

    async def _within_body_deadline(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """Run ``handler``; if the body is not all there in time, the handler's reads fail
        with :class:`BodyTimeout` and the answer is 408, whatever the handler made of it."""
        expired = False

        async def watch() -> None:
            nonlocal expired
            try:
                await asyncio.wait_for(request.content.wait_eof(), self.limits.body_timeout)
            except TimeoutError:
                expired = True
                request.content.set_exception(BodyTimeout())

        watcher = asyncio.create_task(watch(), name="body-deadline")
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
        except BodyTimeout:
            pass
        except web.RequestPayloadError as exc:  # bad chunking, a body that does not decompress
            log.info("http request refused: unreadable body", extra={"error": str(exc)[:100]})
            unreadable = web.json_response({"error": "unreadable request body"}, status=400)
            unreadable.force_close()
            return unreadable
        finally:
            watcher.cancel()
        if expired or response is None:
            self.limits.report("body_timeout", "http request refused: body not received in time")
            late = web.json_response(
                {"error": f"request body not received within {self.limits.body_timeout:g} s"},
                status=408,
            )
            late.force_close()
            return late
        return response

    # ---- lifecycle --------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        # handler_cancellation: a client that hangs up does not keep its handler running.
        self._runner = web.AppRunner(self.web, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        options: dict[str, Any] = {
            "loop": loop,
            "limits": self.limits,
            "access_log": None,
            "keepalive_timeout": self.keepalive_timeout,
            "lingering_time": self.linger_timeout,
            "max_line_size": MAX_LINE_SIZE,
            "max_field_size": MAX_FIELD_SIZE,
            "max_headers": MAX_HEADERS,
            "auto_decompress": False,  # see _deadlines: compressed bodies are refused
        }
        # Our own listener (not web.TCPSite) so that each connection gets _Connection.
        self._listener = await loop.create_server(
            lambda: _Connection(server, **options),
            host,
            port,
            backlog=BACKLOG,
            reuse_address=True,
        )
        self.ready = True
        log.info("http server listening", extra={"host": host, "port": port})

    async def stop(self) -> None:
        self.ready = False
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()  # closes the connections, runs on_cleanup
            self._runner = None
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None
        # The registry may outlive this server (the App's): a next server counts anew.
        with contextlib.suppress(KeyError):
            self.registry.unregister(self.limits.cut)
