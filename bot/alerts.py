"""Alertmanager webhook → incidents (issue 6): the HTTP endpoint.

``POST /alertmanager`` takes Alertmanager's version-4 notification of an alert
*group*: authenticated (bearer token), capped in size, parsed on arrival, then
queued for the batch worker (bot/alert_batches.py), which applies it to its
incident (bot/alert_mapping.py). Alertmanager gets 200 only after the commit;
503 (it retries) when the queue is full or the database fails.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from bot.alert_batches import AlertBatches
from bot.alert_mapping import RULES_FILE, AlertMapping
from bot.clock import Clock
from bot.incidents import Incidents
from bot.integrations.alertmanager import PayloadError, parse_payload
from bot.maintenance import MaintenanceWindows
from bot.outbox import Poster
from bot.settings import Config
from bot.store import Store
from bot.watchdog import WatchdogTimer

if TYPE_CHECKING:
    from bot.web import WebServer

log = logging.getLogger("pira.alerts")

ANSWER_TIMEOUT = 30.0
PARSE_INLINE = 256 * 1024  # larger bodies are parsed in a thread


class AlertIngest:
    def __init__(
        self,
        *,
        store: Store,
        config: Config,
        token: str | None,
        clock: Clock,
        incidents: Incidents,
        poster: Poster,
        maintenance: MaintenanceWindows,
        watchdog: WatchdogTimer,
        notify: Callable[[], None],
        declared: Callable[[list[int]], None] = lambda _numbers: None,
    ) -> None:
        """``token``: the bearer token Alertmanager must send (None: see
        ``settings.allow_unauthenticated``); ``notify`` wakes the outbox; ``declared`` is
        told the incidents declared, after their commit (bot/arrival.py)."""
        settings = config.alertmanager
        self.settings = settings
        self.token = token
        self.mapping = AlertMapping(
            settings=settings,
            alerts=config.alerts,
            clock=clock,
            incidents=incidents,
            poster=poster,
            maintenance=maintenance,
            watchdog=watchdog,
            tz=config.tz,
            rules_file=Path(settings.rules_file) if settings.rules_file else RULES_FILE,
        )
        self.batches = AlertBatches(
            store=store, mapping=self.mapping, notify=notify, declared=declared
        )
        # Our own registry; register() adds it to the web server's, so /metrics shows it.
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pira_alertmanager_requests",
            "Webhook requests by outcome (accepted, unauthorized, forbidden, too_large, "
            "invalid, busy, error).",
            ["outcome"],
            registry=self.registry,
        )
        self.received = Counter(
            "pira_alertmanager_alerts_received",
            "Alerts in well-formed, authenticated notifications.",
            ["status"],
            registry=self.registry,
        )
        self.accepted = Counter(
            "pira_alertmanager_alerts_accepted",
            "Alerts applied to incidents (stored, or known already).",
            registry=self.registry,
        )
        self.rejected = Counter(
            "pira_alertmanager_alerts_rejected",
            "Alerts of well-formed notifications not applied (answered 503; Alertmanager retries).",
            registry=self.registry,
        )

    def register(self, web_server: WebServer) -> None:
        """Add ``POST /alertmanager`` to the bot's HTTP server."""
        web_server.route("POST", "/alertmanager", self.handle)
        web_server.registry.register(self.registry)
        web_server.web.on_cleanup.append(self.batches.stop)
        if self.token is None:
            if self.settings.allow_unauthenticated:
                log.warning("alertmanager endpoint open without a token")
            else:
                log.info("alertmanager endpoint refuses posts: PIRA_ALERTMANAGER_TOKEN unset")

    async def handle(self, request: web.Request) -> web.Response:
        denied = self._authorize(request)
        if denied is not None:
            return denied
        cap = self.settings.max_body_bytes
        length = request.content_length
        if length is not None and length > cap:
            return self._reject(413, "too_large", f"body of {length} bytes is over {cap} bytes")
        body = await _read_capped(request, cap)
        if body is None:
            return self._reject(413, "too_large", f"body is over {cap} bytes")
        try:
            if len(body) > PARSE_INLINE:
                payload = await asyncio.to_thread(parse_payload, body)  # CPU only
            else:
                payload = parse_payload(body)
        except PayloadError as exc:
            return self._reject(400, "invalid", exc.reason)
        for alert in payload.alerts:
            self.received.labels(alert.status).inc()
        if self.batches.full:
            self.rejected.inc(len(payload.alerts))
            return self._reject(503, "busy", "too many notifications queued; retry", retry=5)
        answer = self.batches.submit(payload)
        try:
            result = await asyncio.wait_for(asyncio.shield(answer), ANSWER_TIMEOUT)
        except TimeoutError:
            # Still applied later if the database comes back; a retry is then a no-op.
            self.rejected.inc(len(payload.alerts))
            return self._reject(503, "error", "the database did not answer in time; retry")
        if result.get("status") == "error":
            self.rejected.inc(len(payload.alerts))
            return self._reject(503, "error", "could not store the alerts; retry")
        self.accepted.inc(len(payload.alerts))
        self.requests.labels("accepted").inc()
        return web.json_response(result)

    def _authorize(self, request: web.Request) -> web.Response | None:
        if self.token is None:
            if self.settings.allow_unauthenticated:
                return None
            return self._reject(
                403,
                "forbidden",
                "alert ingestion is off: PIRA_ALERTMANAGER_TOKEN is not set "
                "(or set alertmanager.allow_unauthenticated: true)",
            )
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return self._reject(401, "unauthorized", "missing bearer token")
        # Header bytes that are not UTF-8 arrive as surrogate escapes: compare the bytes
        # as sent (any non-ASCII token is simply wrong).
        sent = given.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(sent, self.token.encode()):
            return self._reject(401, "unauthorized", "wrong bearer token")
        return None

    def _reject(self, status: int, outcome: str, reason: str, retry: int = 0) -> web.Response:
        self.requests.labels(outcome).inc()
        log.warning("alertmanager post refused", extra={"status": status, "reason": reason})
        headers = {"WWW-Authenticate": 'Bearer realm="pira"'} if status == 401 else {}
        if retry:
            headers["Retry-After"] = str(retry)
        return web.json_response({"error": reason}, status=status, headers=headers)


async def _read_capped(request: web.Request, cap: int) -> bytes | None:
    """The body, or None once it exceeds ``cap`` (chunked bodies have no length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
