"""Pages that reach a phone (issue 18): besides the chat DM, a page goes to each
notifier of the person (``people.<name>.notify``) and of the severity
(``severities.<P>.notify_also``): ntfy, PagerDuty, a signed webhook.

Each notifier is a delivery lane of the outbox like a chat room: the page is stored
in the transaction that decides it (the ack chain's timer, ``/page``), delivered by
the leader's outbox worker (bot/notifiers.py), retried with back-off, once per chain
step. Destinations: ``ntfy:<person>``, ``webhook:<person>``, and ``pagerduty:<N>`` —
one lane per incident for PagerDuty, so its trigger, acknowledge and resolve events go
in order. PagerDuty's events carry the incident's ``dedup_key``; an acknowledgement or
resolution in chat sends PagerDuty's own for it (:class:`PlanAndNotify` hooks the
incident verbs' transactions).

An ntfy page carries an "Acknowledge" button whose token is made here: only its
SHA-256 is stored (``page_tokens``), valid once, until the incident is acknowledged
or resolved or ``TOKEN_LIFE`` passed (bot/ack_back.py takes it back).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.messages import Destination
from bot.settings import Config
from bot.store.models import Incident, OutboxMessage, PageToken

if TYPE_CHECKING:
    from bot.incident_change import TimerPlanner
    from bot.outbox import Poster

PHONES = ("ntfy", "pagerduty", "webhook")
TOKEN_LIFE = timedelta(hours=24)


def dedup_key(number: int) -> str:
    """PagerDuty's ``dedup_key`` of incident N: one PagerDuty incident per PIRA one."""
    return f"pira-incident-{number}"


def number_of(key: str) -> int | None:
    head, _, tail = key.rpartition("-")
    ok = head == "pira-incident" and tail.isascii() and tail.isdigit() and len(tail) <= 9
    return int(tail) if ok else None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Notify:
    def __init__(self, *, config: Config, clock: Clock, poster: Poster) -> None:
        self.config = config
        self.clock = clock
        self.poster = poster

    def wanted(self, person: str, severity: str) -> list[str]:
        """The person's notifiers and the severity's, in that order, once each."""
        own = self.config.people[person].notify if person in self.config.people else ("chat",)
        also = self.config.policy(severity).notify_also
        return list(dict.fromkeys([*own, *also]))

    def wants_chat(self, person: str, severity: str) -> bool:
        return "chat" in self.wanted(person, severity)

    def page(
        self, s: Session, *, incident: Incident, person: str, data: dict[str, Any], key: str
    ) -> list[str]:
        """Store the page for every phone notifier of the person and the severity (in
        the caller's transaction); the notifiers it was stored for."""
        stored: list[str] = []
        now = self.clock.now()
        for name in self.wanted(person, incident.severity):
            if name not in PHONES:
                continue
            extra: dict[str, Any] = {"number": incident.number}
            if name == "pagerduty":
                where = Destination(f"pagerduty:{incident.number}")
                extra.update(pd_action="trigger", dedup_key=dedup_key(incident.number))
            else:
                where = Destination(f"{name}:{person}")
            if name == "ntfy":
                token = secrets.token_urlsafe(24)
                s.add(
                    PageToken(
                        digest=digest(token),
                        incident_id=incident.id,
                        person=person,
                        created_at=now,
                        expires_at=now + TOKEN_LIFE,
                    )
                )
                extra["ack_token"] = token
            stored += self.poster.post(
                s, incident.id, where, "page", {**data, **extra}, f"{key}:{name}"
            )
        return stored

    def acknowledged(self, s: Session, incident: Incident, now: datetime) -> None:
        self._ended(s, incident, now, "acknowledge")

    def resolved(self, s: Session, incident: Incident, now: datetime) -> None:
        self._ended(s, incident, now, "resolve")

    def _ended(self, s: Session, incident: Incident, now: datetime, action: str) -> None:
        """The page no longer stands: its ack links expire; PagerDuty, if it was
        triggered for the incident, gets the same news under the same dedup_key."""
        s.execute(
            update(PageToken)
            .where(
                PageToken.incident_id == incident.id,
                PageToken.used_at.is_(None),
                PageToken.expires_at > now,
            )
            .values(expires_at=now)
        )
        triggered = s.scalar(
            select(OutboxMessage.id)
            .where(OutboxMessage.incident_id == incident.id, OutboxMessage.platform == "pagerduty")
            .limit(1)
        )
        if triggered is None:
            return
        number = incident.number
        self.poster.post(
            s,
            incident.id,
            Destination(f"pagerduty:{number}"),
            "text",
            {
                "text": f"#{number} {incident.title}: {action}d in PIRA",
                "pd_action": action,
                "dedup_key": dedup_key(number),
                "number": number,
            },
            f"inc{number}:pagerduty:{action}",
        )


class PlanAndNotify:
    """The incident verbs' TimerPlanner: the timers' plan, and the notifiers told of an
    acknowledgement or a resolution — in the verb's own transaction."""

    def __init__(self, plan: TimerPlanner, notify: Notify) -> None:
        self.plan = plan
        self.notify = notify

    def on_declared(self, s: Session, incident: Incident, now: datetime) -> None:
        self.plan.on_declared(s, incident, now)

    def on_acknowledged(self, s: Session, incident: Incident, now: datetime) -> None:
        self.plan.on_acknowledged(s, incident, now)
        self.notify.acknowledged(s, incident, now)

    def on_updated(self, s: Session, incident: Incident, now: datetime) -> None:
        self.plan.on_updated(s, incident, now)

    def on_severity_changed(self, s: Session, incident: Incident, now: datetime) -> None:
        self.plan.on_severity_changed(s, incident, now)

    def on_resolved(self, s: Session, incident: Incident, now: datetime) -> None:
        self.plan.on_resolved(s, incident, now)
        self.notify.resolved(s, incident, now)


def missing_environment(config: Config, env: Any) -> list[str]:
    """Configuration errors: a notifier someone names whose environment is not set."""
    needs = {
        "ntfy": [("PIRA_NTFY_URL", env.ntfy_url), ("PIRA_PUBLIC_URL", env.public_url)],
        "pagerduty": [("PIRA_PAGERDUTY_ROUTING_KEY", env.pagerduty_routing_key)],
        "webhook": [
            ("PIRA_WEBHOOK_URL", env.webhook_url),
            ("PIRA_WEBHOOK_SECRET", env.webhook_secret),
        ],
    }
    named: dict[str, str] = {}
    for name, person in config.people.items():
        for way in person.notify:
            named.setdefault(way, f"people.{name}.notify")
        if "ntfy" in person.notify and not person.ntfy_topic:
            named.setdefault(f"ntfy-topic:{name}", f"people.{name}")
    for sev, policy in config.severities.items():
        for way in policy.notify_also:
            named.setdefault(way, f"severities.{sev}.notify_also")
    errors: list[str] = []
    for n, where in named.items():
        if n.startswith("ntfy-topic:"):
            errors.append(f"{where}: notify names ntfy but ntfy_topic is not set")
            continue
        for variable, value in needs.get(n, []):
            if not value:
                errors.append(f"{where}: names {n}, but {variable} is not set")
    return errors
