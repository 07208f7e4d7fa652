"""The pieces of an incident verb: one transaction (:class:`Change`), what it tells its
caller (:class:`Outcome`), and what it needs of the timers and the pager."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from bot import audit
from bot.people import Actor
from bot.store.models import Incident, TimelineEvent


class TimerPlanner(Protocol):
    """Where an incident's durable timers are planned, re-planned and cancelled.
    Called inside the verb's transaction."""

    def on_declared(self, session: Session, incident: Incident, now: datetime) -> None: ...
    def on_acknowledged(self, session: Session, incident: Incident, now: datetime) -> None: ...
    def on_updated(self, session: Session, incident: Incident, now: datetime) -> None: ...
    def on_severity_changed(self, session: Session, incident: Incident, now: datetime) -> None: ...
    def on_resolved(self, session: Session, incident: Incident, now: datetime) -> None: ...


class Pager(Protocol):
    def page(
        self,
        s: Session,
        *,
        incident: Incident,
        target: str,
        reason: str,
        key: str,
        late: str | None = None,
    ) -> str | None: ...


@dataclass
class Change:
    """One verb's transaction: the session, the incident, the moment, who and whence."""

    s: Session
    incident: Incident
    now: datetime
    by: Actor
    source: str

    def event(self, kind: str, text: str, *, outcome: str = "ok") -> TimelineEvent:
        """A timeline line; the command that made it is audited in the same commit."""
        audit.join(self.s, self.now, outcome, text)
        ev = TimelineEvent(
            incident_id=self.incident.id,
            at=self.now,
            actor=self.by.handle,
            source=self.source,
            kind=kind,
            text=text,
        )
        self.s.add(ev)
        self.s.flush()
        return ev

    def remember(self, key: str, value: Any, *, append: bool = False) -> None:
        """A ticket field kept in the incident's details (``append``: one more line of
        a list, e.g. the actions taken)."""
        details = dict(self.incident.details or {})
        if append:
            details[key] = [*details.get(key, []), value]
        else:
            details[key] = value
        self.incident.details = details  # a new dict: the JSON column sees the change


@dataclass(frozen=True)
class Outcome:
    """What a verb did, for the reply to its caller."""

    incident: Incident
    text: str
