"""The phone notifiers as outbox adapters (issue 18; what goes to them: bot/notify.py).

- **ntfy**: a JSON publish to ``PIRA_NTFY_URL`` (``PIRA_NTFY_TOKEN`` as bearer), the
  person's topic, priority from the severity, an "Acknowledge" action that POSTs the
  page's token to ``PIRA_PUBLIC_URL/ntfy/ack``. ntfy takes no idempotency key: a page
  attempted before (a crash between the publish and its record) is looked for in the
  topic's cache (``GET /<topic>/json?poll=1``, by a tag made from the post's key)
  before it is sent again.
- **PagerDuty Events API v2**: trigger / acknowledge / resolve with the incident's
  ``dedup_key``; PagerDuty collapses a repeated trigger, so a retry is harmless.
- **Webhook**: a JSON POST signed with HMAC-SHA256 over ``<timestamp>.<body>``
  (``X-PIRA-Timestamp``, ``X-PIRA-Signature: sha256=<hex>``), the post's key in
  ``X-PIRA-Delivery`` for the receiver to drop a repeat.

Answers: 2xx delivered; 429 and 5xx and network errors retried with back-off (the
delivery engine's); other 4xx given up (a wrong key or topic does not heal).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from datetime import datetime
from typing import Any

import aiohttp

from bot.messages import Destination
from bot.outbox import DeliveryError, Outbound
from bot.settings import Config, Env

log = logging.getLogger("pira.notifiers")

TIMEOUT = aiohttp.ClientTimeout(total=10)
PRIORITY = {"P0": 5, "P1": 4, "P2": 3, "P3": 2}
PD_SEVERITY = {"P0": "critical", "P1": "error", "P2": "warning", "P3": "info"}


def post_tag(key: str) -> str:
    """The tag an ntfy message carries to be found again: from its outbox key."""
    return "pira-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _retry_after(answer: aiohttp.ClientResponse) -> float | None:
    raw = answer.headers.get("Retry-After", "")
    return float(raw) if raw.replace(".", "", 1).isdigit() else None


async def _send(
    name: str, method: str, url: str, *, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, bytes]:
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as http,
            http.request(method, url, data=body, headers=headers) as answer,
        ):
            content = await answer.read()
            if answer.status == 429 or answer.status >= 500 or answer.status == 408:
                raise DeliveryError(
                    f"{name}: HTTP {answer.status}", retry_after=_retry_after(answer)
                )
            if answer.status >= 400:
                detail = content[:200].decode("utf-8", "replace")
                raise DeliveryError(f"{name}: HTTP {answer.status} {detail}", permanent=True)
            return answer.status, content
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"{name}: {type(exc).__name__}") from None
    except TimeoutError:
        raise DeliveryError(f"{name}: no answer within 10 s") from None


class _Pace:
    """At most ``per_second`` requests a second, spaced evenly (per notifier)."""

    def __init__(self, per_second: float) -> None:
        self.gap = 1.0 / per_second
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def __aenter__(self) -> None:
        async with self.lock:
            now = asyncio.get_running_loop().time()
            if self.next > now:
                await asyncio.sleep(self.next - now)
            self.next = max(now, self.next) + self.gap

    async def __aexit__(self, *_: object) -> None:
        return None


class _Notifier:
    name = ""

    def __init__(self, config: Config, env: Env) -> None:
        self.config = config
        self.env = env
        self.limiter = _Pace(5)

    def reaches(self, destination: Destination) -> bool:
        return destination.kind == self.name

    async def _admitted(self, message: Outbound) -> None:
        if message.admitted is not None:
            await message.admitted()

    async def deliver(self, message: Outbound) -> dict[str, Any] | None:
        raise NotImplementedError


class NtfyNotifier(_Notifier):
    name = "ntfy"

    def reaches(self, destination: Destination) -> bool:
        person = self.config.people.get(destination.arg)
        return destination.kind == "ntfy" and person is not None and bool(person.ntfy_topic)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.env.ntfy_token:
            headers["Authorization"] = f"Bearer {self.env.ntfy_token}"
        return headers

    async def deliver(self, message: Outbound) -> dict[str, Any] | None:
        assert self.env.ntfy_url and self.env.public_url
        topic = self.config.people[message.destination.arg].ntfy_topic
        base = self.env.ntfy_url.rstrip("/")
        tag = post_tag(message.key)
        async with self.limiter:
            if message.attempted_at is not None and await self._published(
                base, str(topic), tag, message.attempted_at
            ):
                log.info("ntfy page found already published", extra={"key": message.key})
                return {"topic": topic, "tag": tag}
            data = message.data
            title = f"[{data.get('severity', '')}] #{data.get('number')} {data.get('title', '')}"
            body = {
                "topic": topic,
                "title": title[:250],
                "message": message.text[:4000],
                "priority": PRIORITY.get(str(data.get("severity")), 4),
                "tags": ["rotating_light", tag],
                "actions": [
                    {
                        "action": "http",
                        "label": "Acknowledge",
                        "url": self.env.public_url.rstrip("/") + "/ntfy/ack",
                        "method": "POST",
                        "headers": {"Content-Type": "application/json"},
                        "body": json.dumps({"token": data.get("ack_token", "")}),
                        "clear": True,
                    }
                ],
            }
            await self._admitted(message)
            await _send(
                "ntfy", "POST", base, headers=self._headers(), body=json.dumps(body).encode()
            )
        return {"topic": topic, "tag": tag}

    async def _published(self, base: str, topic: str, tag: str, since: datetime) -> bool:
        """Whether the topic's cache holds a message with ``tag`` (since the attempt)."""
        url = f"{base}/{topic}/json?poll=1&since={int(since.timestamp()) - 60}"
        _, content = await _send("ntfy", "GET", url, headers=self._headers())
        for line in content.decode("utf-8", "replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event", "message") == "message" and tag in (event.get("tags") or []):
                return True
        return False


class PagerDutyNotifier(_Notifier):
    name = "pagerduty"

    async def deliver(self, message: Outbound) -> dict[str, Any] | None:
        data = message.data
        action = str(data.get("pd_action", "trigger"))
        event: dict[str, Any] = {
            "routing_key": self.env.pagerduty_routing_key,
            "event_action": action,
            "dedup_key": data["dedup_key"],
        }
        if action == "trigger":
            severity = str(data.get("severity", "P1"))
            event["payload"] = {
                "summary": f"[{severity}] #{data.get('number')} {data.get('title', '')}"[:1024],
                "source": "pira",
                "severity": PD_SEVERITY.get(severity, "error"),
                "custom_details": {
                    "reason": data.get("reason"),
                    "paged": data.get("person"),
                    "impact": data.get("impact"),
                },
            }
            event["client"] = "PIRA"
        async with self.limiter:
            await self._admitted(message)
            await _send(
                "pagerduty",
                "POST",
                self.env.pagerduty_url,
                headers={"Content-Type": "application/json"},
                body=json.dumps(event).encode(),
            )
        return {"dedup_key": data["dedup_key"], "action": action}


class WebhookNotifier(_Notifier):
    name = "webhook"

    async def deliver(self, message: Outbound) -> dict[str, Any] | None:
        assert self.env.webhook_url and self.env.webhook_secret
        data = message.data
        body = json.dumps(
            {
                "type": "page",
                "incident": data.get("number"),
                "severity": data.get("severity"),
                "title": data.get("title"),
                "person": message.destination.arg,
                "reason": data.get("reason"),
                "text": message.text,
                "acknowledge": f"/ack #{data.get('number')}",
            }
        ).encode()
        stamp = str(int(time.time()))
        signature = hmac.new(
            self.env.webhook_secret.encode(), stamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        async with self.limiter:
            await self._admitted(message)
            await _send(
                "webhook",
                "POST",
                self.env.webhook_url,
                headers={
                    "Content-Type": "application/json",
                    "X-PIRA-Timestamp": stamp,
                    "X-PIRA-Signature": f"sha256={signature}",
                    "X-PIRA-Delivery": message.key,
                },
                body=body,
            )
        return None


def notifiers(config: Config, env: Env) -> list[_Notifier]:
    """The notifiers whose environment is set."""
    found: list[_Notifier] = []
    if env.ntfy_url and env.public_url:
        found.append(NtfyNotifier(config, env))
    if env.pagerduty_routing_key:
        found.append(PagerDutyNotifier(config, env))
    if env.webhook_url and env.webhook_secret:
        found.append(WebhookNotifier(config, env))
    return found
