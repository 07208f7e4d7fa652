"""Protocol fakes of the phone notifiers (issue 18), on loopback, with the failure
injection of tests/support/fake_server.py:

- :class:`FakeNtfy` — ntfy's JSON publish (``POST /`` with ``{"topic", "message",
  "title", "priority", "tags", "actions"}``, bearer auth) and its message cache
  (``GET /<topic>/json?poll=1&since=<unix>``: one JSON message a line), as
  https://docs.ntfy.sh/publish/ and https://docs.ntfy.sh/subscribe/api/ describe them.
- :class:`FakePagerDuty` — the Events API v2 (``POST /v2/enqueue``: ``202
  {"status": "success", "message": "Event processed", "dedup_key"}``; ``400`` for an
  invalid event), keeping PagerDuty's incidents by ``dedup_key`` as PagerDuty does: a
  trigger for an open incident is folded into it; and v3 webhooks signed as PagerDuty
  signs them (:func:`pagerduty_webhook`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.support.fake_server import (
    FakeServer,
    Fault,
    HttpReply,
    JSONDict,
    json_response,
)


class FakeNtfy(FakeServer):
    def __init__(self, token: str = "tk_ntfy_test_token") -> None:
        super().__init__()
        self.token = token
        self.messages: list[JSONDict] = []  # what subscribers got, in order

    @property
    def url(self) -> str:
        return self.root_url

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._publish)
        app.router.add_get("/{topic}/json", self._poll)
        return app

    def _error_reply(self, kind: str, fault: Fault) -> HttpReply:
        if kind == "ratelimit":
            return HttpReply(
                429,
                {"code": 42901, "http": 429, "error": "limit reached: too many requests"},
                {"Retry-After": str(fault.retry_after)},
            )
        return HttpReply(fault.status, fault.body or {"http": fault.status, "error": "error"})

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer {self.token}"

    async def _publish(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            params = json.loads(raw)
        except ValueError:
            params = {}
        call = self._record(self._request_call(request, "publish", params, None, body=raw))

        async def process() -> HttpReply:
            if not self._authorized(request):
                return HttpReply(403, {"code": 40301, "http": 403, "error": "forbidden"})
            if not isinstance(params, dict) or not params.get("topic"):
                return HttpReply(400, {"code": 40001, "http": 400, "error": "invalid request"})
            message = {
                "id": uuid.uuid4().hex[:12],
                "time": int(time.time()),
                "event": "message",
                **{
                    k: params[k]
                    for k in ("topic", "title", "message", "priority", "tags", "actions")
                    if k in params
                },
            }
            with self._lock:
                self.messages.append(message)
            return HttpReply(200, message)

        return json_response(await self._pipeline(call, process))

    async def _poll(self, request: web.Request) -> web.Response:
        topic = request.match_info["topic"]
        call = self._record(self._request_call(request, "poll", dict(request.query), None))

        async def process() -> HttpReply:
            if not self._authorized(request):
                return HttpReply(403, {"code": 40301, "http": 403, "error": "forbidden"})
            since = request.query.get("since", "all")
            floor = int(since) if since.isdigit() else 0
            with self._lock:
                found = [m for m in self.messages if m["topic"] == topic and m["time"] >= floor]
            return HttpReply(200, "".join(json.dumps(m) + "\n" for m in found))

        return json_response(await self._pipeline(call, process))

    def on_topic(self, topic: str) -> list[JSONDict]:
        with self._lock:
            return [m for m in self.messages if m["topic"] == topic]


@dataclass
class PagerDutyIncident:
    dedup_key: str
    status: str  # triggered, acknowledged, resolved
    summary: str
    events: list[str] = field(default_factory=list)  # every event_action applied


class FakePagerDuty(FakeServer):
    def __init__(self, routing_key: str = "R0UTINGKEY0123456789ABCDEFGHIJKL") -> None:
        super().__init__()
        self.routing_key = routing_key
        self.incidents: dict[str, PagerDutyIncident] = {}
        self.events: list[JSONDict] = []  # every accepted event, in order

    @property
    def url(self) -> str:
        return f"{self.root_url}/v2/enqueue"

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self._enqueue)
        return app

    def _error_reply(self, kind: str, fault: Fault) -> HttpReply:
        if kind == "ratelimit":
            return HttpReply(
                429,
                {
                    "status": "throttle event",
                    "message": "Requests for this service are arriving too quickly.",
                },
            )
        return HttpReply(
            fault.status, fault.body or {"status": "error", "message": "internal error"}
        )

    async def _enqueue(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            params = json.loads(raw)
        except ValueError:
            params = None
        call = self._record(
            self._request_call(
                request, "enqueue", params if isinstance(params, dict) else {}, None, body=raw
            )
        )

        async def process() -> HttpReply:
            problems = self._invalid(params)
            if problems:
                return HttpReply(
                    400,
                    {
                        "status": "invalid event",
                        "message": "Event object is invalid",
                        "errors": problems,
                    },
                )
            assert isinstance(params, dict)
            key = str(params.get("dedup_key") or uuid.uuid4().hex)
            action = params["event_action"]
            with self._lock:
                self.events.append(params)
                found = self.incidents.get(key)
                if action == "trigger":
                    if found is None or found.status == "resolved":
                        found = PagerDutyIncident(key, "triggered", params["payload"]["summary"])
                        self.incidents[key] = found
                    found.events.append(action)
                elif found is not None and found.status != "resolved":
                    found.status = "acknowledged" if action == "acknowledge" else "resolved"
                    found.events.append(action)
            return HttpReply(
                202, {"status": "success", "message": "Event processed", "dedup_key": key}
            )

        return json_response(await self._pipeline(call, process))

    def _invalid(self, params: Any) -> list[str]:
        if not isinstance(params, dict):
            return ["body is not a JSON object"]
        problems = []
        if params.get("routing_key") != self.routing_key:
            problems.append("'routing_key' is invalid")
        action = params.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            problems.append("'event_action' is missing or invalid")
        if action in ("acknowledge", "resolve") and not params.get("dedup_key"):
            problems.append("'dedup_key' is required")
        if action == "trigger":
            payload = params.get("payload") or {}
            for name in ("summary", "source", "severity"):
                if not payload.get(name):
                    problems.append(f"'payload.{name}' is missing")
            if payload.get("severity") not in ("critical", "error", "warning", "info"):
                problems.append("'payload.severity' is invalid")
        return problems


def pagerduty_webhook(
    secret: str,
    *,
    incident_key: str,
    event_type: str = "incident.acknowledged",
    agent_id: str = "PUSER01",
    agent_name: str = "Alice Example",
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A PagerDuty v3 webhook body and its headers, signed as PagerDuty signs it
    (``X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the body>``)."""
    at = (occurred_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = json.dumps(
        {
            "event": {
                "id": event_id or "01" + uuid.uuid4().hex[:24].upper(),
                "event_type": event_type,
                "resource_type": "incident",
                "occurred_at": at,
                "agent": {
                    "html_url": f"https://acme.pagerduty.com/users/{agent_id}",
                    "id": agent_id,
                    "self": f"https://api.pagerduty.com/users/{agent_id}",
                    "summary": agent_name,
                    "type": "user_reference",
                },
                "client": None,
                "data": {
                    "id": "Q" + uuid.uuid4().hex[:13].upper(),
                    "type": "incident",
                    "self": "https://api.pagerduty.com/incidents/Q1",
                    "html_url": "https://acme.pagerduty.com/incidents/Q1",
                    "number": 7,
                    "status": "acknowledged",
                    "incident_key": incident_key,
                    "title": "[P0] #1 spark down",
                    "urgency": "high",
                },
            }
        }
    ).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-PagerDuty-Signature": f"v1={signature}",
        "X-Webhook-Id": uuid.uuid4().hex,
        "User-Agent": "PagerDuty-Webhook/V3.0",
    }
    return body, headers


class FakeWebhookReceiver(FakeServer):
    """A receiver of PIRA's signed webhook: records each POST, checks nothing itself
    (:func:`webhook_signature_ok` is the receiver's check, as the README documents it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def url(self) -> str:
        return f"{self.root_url}/hooks/pira"

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hooks/pira", self._receive)
        return app

    def _error_reply(self, kind: str, fault: Fault) -> HttpReply:
        return HttpReply(429 if kind == "ratelimit" else fault.status, {"error": kind})

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            params = json.loads(raw)
        except ValueError:
            params = {}
        call = self._record(self._request_call(request, "hook", params, None, body=raw))

        async def process() -> HttpReply:
            return HttpReply(204, "")

        return json_response(await self._pipeline(call, process))


def webhook_signature_ok(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    """What a receiver checks: HMAC-SHA256 of ``<X-PIRA-Timestamp>.<body>``."""
    stamp = headers.get("X-PIRA-Timestamp", "")
    want = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={want}", headers.get("X-PIRA-Signature", ""))
