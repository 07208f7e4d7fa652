"""Acknowledgements coming back from phones (issue 18): they count as ``/ack`` by the
person paged.

- ``POST /ntfy/ack`` — the "Acknowledge" action of an ntfy page posts
  ``{"token": "…"}``: the page's own token (bot/notify.py), taken once (a conditional
  update claims it), while its page stands (not acknowledged, not resolved, younger
  than a day).
- ``POST /pagerduty`` — PagerDuty's webhooks (v3): ``X-PagerDuty-Signature`` is
  ``v1=<HMAC-SHA256 of the body with PIRA_PAGERDUTY_WEBHOOK_SECRET>`` (several,
  comma-separated, while a secret rotates); an ``incident.acknowledged`` event of an
  incident PIRA triggered (its ``incident_key`` is our dedup_key) acknowledges it,
  as the person whose ``people.<name>.pagerduty_user`` is the agent. Each event id is
  taken once; an event older than ``MAX_AGE`` is refused.

Forged, expired or replayed: ``401``, nothing changed, and the attempt audited.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from bot.clock import Clock
from bot.domain.incident import InvalidInput, clean
from bot.incidents import Incidents
from bot.notify import digest, number_of
from bot.people import Actor, Directory
from bot.settings import Config, Env
from bot.store import Store
from bot.store.models import AuditEntry, Incident, PageToken, WebhookEvent

if TYPE_CHECKING:
    from bot.web import WebServer

log = logging.getLogger("pira.ackback")

MAX_BODY = 64 * 1024
MAX_AGE = timedelta(minutes=10)


class Refused(Exception):
    """Answered 401: forged, expired or replayed."""


class AckBack:
    def __init__(
        self,
        *,
        store: Store,
        config: Config,
        env: Env,
        clock: Clock,
        incidents: Incidents,
        directory: Directory,
    ) -> None:
        self.store = store
        self.config = config
        self.env = env
        self.clock = clock
        self.incidents = incidents
        self.directory = directory

    def register(self, web_server: WebServer) -> None:
        web_server.route("POST", "/ntfy/ack", self.ntfy)
        web_server.route("POST", "/pagerduty", self.pagerduty)

    # ---- ntfy -----------------------------------------------------------------

    async def ntfy(self, request: web.Request) -> web.Response:
        body = await request.content.read(MAX_BODY + 1)
        data = _json(body) if len(body) <= MAX_BODY else None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token or len(token) > 200:
            return await self._refuse("ntfy", "no token", status=400)
        try:
            number, person = await self.store.run(self._claim, token)
        except Refused as exc:
            return await self._refuse("ntfy", str(exc))
        return await self._ack(number, self.directory.person_actor(person), "ntfy")

    def _claim(self, token: str) -> tuple[int, str]:
        """Take the token once (a conditional update), with its audit row."""
        now = self.clock.now()
        key = digest(token)
        with self.store.transaction() as s:
            row = s.get(PageToken, key)
            if row is None:
                raise Refused("unknown token")
            if row.used_at is not None:
                raise Refused("token already used")
            if row.expires_at <= now:
                raise Refused("token expired: the page no longer stands")
            taken = s.execute(
                update(PageToken)
                .where(PageToken.digest == key, PageToken.used_at.is_(None))
                .values(used_at=now)
            )
            if getattr(taken, "rowcount", 0) != 1:
                raise Refused("token already used")
            incident = s.get(Incident, row.incident_id)
            assert incident is not None
            s.add(_audit(now, row.person, "ntfy", "ok", f"acknowledge #{incident.number}"))
            return incident.number, row.person

    # ---- PagerDuty --------------------------------------------------------------

    async def pagerduty(self, request: web.Request) -> web.Response:
        secret = self.env.pagerduty_webhook_secret
        if not secret:
            return web.json_response(
                {"error": "PIRA_PAGERDUTY_WEBHOOK_SECRET is not set"}, status=403
            )
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return await self._refuse("pagerduty", "body too large", status=413)
        if not _signed(body, request.headers.get("X-PagerDuty-Signature", ""), secret):
            return await self._refuse("pagerduty", "bad signature")
        try:
            event = _json(body)["event"]
            kind = str(event["event_type"])
            event_id = clean(str(event["id"]))[:200]
            occurred = datetime.fromisoformat(str(event["occurred_at"]).replace("Z", "+00:00"))
            data = event.get("data") or {}
            agent = event.get("agent") or {}
            if not isinstance(data, dict) or not isinstance(agent, dict) or not event_id:
                raise TypeError("not objects")
        except (ValueError, KeyError, TypeError, AttributeError):
            return await self._refuse("pagerduty", "not a PagerDuty v3 event", status=400)
        if kind != "incident.acknowledged":
            return web.json_response({"status": "ignored", "event_type": kind[:100]})
        number = number_of(str(data.get("incident_key") or ""))
        if number is None:
            return web.json_response({"status": "ignored", "reason": "not a PIRA incident"})
        try:
            await self.store.run(self._take_event, event_id, occurred)
        except Refused as exc:
            return await self._refuse("pagerduty", str(exc))
        return await self._ack(number, self._agent(agent), "pagerduty")

    def _take_event(self, event_id: str, occurred: datetime) -> None:
        now = self.clock.now()
        if occurred.tzinfo is None or now - occurred > MAX_AGE:
            raise Refused("event too old")
        try:
            with self.store.transaction() as s:
                s.add(WebhookEvent(id=event_id, source="pagerduty", received_at=now))
        except IntegrityError:
            raise Refused("event already taken") from None

    def _agent(self, agent: dict[str, Any]) -> Actor:
        user = str(agent.get("id") or "")
        for key, person in self.config.people.items():
            if user and person.pagerduty_user == user:
                return self.directory.person_actor(key)
        name = clean(str(agent.get("summary") or "someone"))[:60]
        return Actor(
            key=f"pagerduty:{user}", name=f"{name} (PagerDuty)", roles=frozenset(), known=False
        )

    # ---- both --------------------------------------------------------------------

    async def _ack(self, number: int, actor: Actor, source: str) -> web.Response:
        try:
            outcome = await self.store.run(
                self.incidents.ack, number=number, by=actor, source=source
            )
        except InvalidInput as exc:  # resolved meanwhile
            return web.json_response({"status": "not acknowledged", "reason": str(exc)})
        log.info("acknowledged from a phone", extra={"incident": number, "source": source})
        return web.json_response({"status": "acknowledged", "text": outcome.text})

    async def _refuse(self, source: str, why: str, status: int = 401) -> web.Response:
        log.warning("ack-back refused", extra={"source": source, "why": why})
        await self.store.run(self._audit_refusal, source, why)
        return web.json_response({"error": why}, status=status)

    def _audit_refusal(self, source: str, why: str) -> None:
        with self.store.transaction() as s:
            s.add(_audit(self.clock.now(), "unknown", source, "refused", why))


def _audit(at: datetime, actor: str, source: str, outcome: str, detail: str) -> AuditEntry:
    return AuditEntry(
        at=at, actor=actor[:100], source=source, action="ack-back", outcome=outcome, detail=detail
    )


def _json(body: bytes) -> Any:
    """The body as JSON, or None (not JSON, not UTF-8, nested too deeply to parse)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _signed(body: bytes, header: str, secret: str) -> bool:
    """PagerDuty v3: one of the comma-separated ``v1=<hex>`` is the body's HMAC."""
    want = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    given = [part.strip().removeprefix("v1=") for part in header.split(",") if part.strip()]
    return any(hmac.compare_digest(want.encode(), g.encode("utf-8", "replace")) for g in given)
