"""The bot's one HTTP server (aiohttp): health, readiness, metrics; chat webhooks and
Alertmanager register their routes here."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("pira.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebServer:
    def __init__(self, app: App, registry: CollectorRegistry) -> None:
        self.app = app
        self.registry = registry
        self.web = web.Application(client_max_size=1024 * 1024)
        self.web.router.add_get("/healthz", self.healthz)
        self.web.router.add_get("/readyz", self.readyz)
        self.web.router.add_get("/metrics", self.metrics)
        self._runner: web.AppRunner | None = None
        self.ready = False

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.web.router.add_route(method, path, handler)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.json_response({"status": "starting"}, status=503)
        try:
            from sqlalchemy import text

            with self.app.store.read() as s:
                s.execute(text("SELECT 1"))
        except Exception as exc:
            return web.json_response(
                {"status": "database unavailable", "error": type(exc).__name__}, status=503
            )
        return web.json_response({"status": "ready"})

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.web, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.ready = True
        log.info("http server listening", extra={"host": host, "port": port})

    async def stop(self) -> None:
        self.ready = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
