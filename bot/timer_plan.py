"""Planning an incident's timers, inside the transaction of the change that causes
them: the ack chain and the resolution triggers from the declaration, the
next-update reminder and its overdue call-out from the last update. Re-planned on a
severity change, partly cancelled on an acknowledgement, all cancelled on
resolution. Fired by :class:`bot.timers.Timers`.

A severity counted in business time (``business_time``, P3's "next business day"):
its reminder, overdue call-out and ack chain fall due at the next opening of the
business calendar when they would fall outside working time.

An incident declared from alerts during maintenance is *held* (``details["held"]``,
bot/maintenance.py): no ack chain, no escalations, a ``release`` timer at the
window's end instead; released, both are planned from that moment
(``details["paging_from"]``)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.domain.business import BusinessCalendar
from bot.settings import Config
from bot.store.models import Incident, Timer

INCIDENT_KINDS = ("page", "escalate", "reminder", "overdue", "release")


def held(incident: Incident) -> bool:
    """Whether maintenance holds the incident's pages and escalations."""
    return bool((incident.details or {}).get("held"))


def paging_from(incident: Incident) -> datetime:
    """Where the ack chain and the escalations count from: the detection, or the end
    of the maintenance that held the incident."""
    released = (incident.details or {}).get("paging_from")
    return datetime.fromisoformat(released) if released else incident.detected_at


class TimerPlan:
    """The incident service's TimerPlanner."""

    def __init__(self, *, config: Config, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.calendar = BusinessCalendar(config.business, config.tz)

    def due(self, severity: str, t: datetime) -> datetime:
        """When something due at ``t`` falls due for a severity: the next opening of the
        business calendar for one counted in business time, ``t`` itself otherwise."""
        return self.calendar.due(t, business_time=self.config.policy(severity).business_time)

    def on_declared(self, s: Session, incident: Incident, now: datetime) -> None:
        # A new incident has no timers yet: plan without looking any up (no query, no
        # autoflush), so a batch of declarations costs inserts only.
        if held(incident):
            until = datetime.fromisoformat(incident.details["held"]["until"])
            s.add(
                Timer(
                    key=f"inc{incident.id}:release",
                    incident_id=incident.id,
                    kind="release",
                    step=0,
                    due_at=until,
                )
            )
        self._plan_chain(s, incident, fresh=True)
        self._plan_escalations(s, incident, fresh=True)
        self.rearm_reminder(s, incident, base=incident.last_update_at, now=now, fresh=True)

    def on_acknowledged(self, s: Session, incident: Incident, now: datetime) -> None:
        self._cancel(s, incident, ("page",), now)

    def on_updated(self, s: Session, incident: Incident, now: datetime) -> None:
        self.rearm_reminder(s, incident, base=now, now=now)

    def on_severity_changed(self, s: Session, incident: Incident, now: datetime) -> None:
        self._plan_chain(s, incident)
        self._plan_escalations(s, incident)
        self.rearm_reminder(s, incident, base=incident.last_update_at, now=now)

    def on_resolved(self, s: Session, incident: Incident, now: datetime) -> None:
        self._cancel(s, incident, INCIDENT_KINDS, now)

    def on_released(self, s: Session, incident: Incident, now: datetime) -> None:
        """The maintenance that held the incident is over: its chain (unless someone
        acknowledged meanwhile) and escalations count from ``now``."""
        details = {k: v for k, v in (incident.details or {}).items() if k != "held"}
        details["paging_from"] = now.isoformat()
        details["page_at_once"] = True  # it waited the whole window already
        incident.details = details  # a new dict: JSON columns do not track mutation
        self._plan_chain(s, incident)
        self._plan_escalations(s, incident)

    def _plan_chain(self, s: Session, incident: Incident, fresh: bool = False) -> None:
        """The ack chain, planned whole from the declaration: step k is paged unless
        someone acknowledged before its time. Steps already paged stay paged."""
        if incident.acknowledged_at is not None or held(incident):
            return
        policy = self.config.policy(incident.severity)
        if policy.page_after is None:
            if not fresh:
                self._cancel(s, incident, ("page",), self.clock.now())
            return
        # "page_at_once": PIRA's own alarm (monitoring is blind), or an incident released
        # by the end of maintenance, pages without waiting for the severity's page_after.
        at_once = (incident.details or {}).get("page_at_once")
        due = paging_from(incident) + (timedelta(0) if at_once else policy.page_after)
        for step, link in enumerate(self.config.oncall.chain):
            due = self.due(incident.severity, due)
            self._upsert(
                s,
                incident,
                key=f"inc{incident.id}:page:{step}",
                kind="page",
                step=step,
                due=due,
                target=link.role,
                fresh=fresh,
            )
            due += link.respond_within.get(incident.severity, policy.respond_within)  # type: ignore[call-overload]

    def _plan_escalations(self, s: Session, incident: Incident, fresh: bool = False) -> None:
        if held(incident):
            return
        policy = self.config.policy(incident.severity)
        base = paging_from(incident)
        wanted: dict[str, tuple[datetime, str, int]] = {}
        for step, trigger in enumerate(policy.escalate):
            wanted.setdefault(
                f"inc{incident.id}:escalate:{trigger.to}",
                (base + trigger.after, trigger.to, step),
            )
        for row in [] if fresh else self._pending(s, incident, ("escalate",)):
            if row.key not in wanted:
                row.cancelled_at = self.clock.now()
        for key, (due, target, step) in wanted.items():
            self._upsert(
                s,
                incident,
                key=key,
                kind="escalate",
                step=step,
                due=due,
                target=target,
                fresh=fresh,
            )

    def rearm_reminder(
        self, s: Session, incident: Incident, *, base: datetime, now: datetime, fresh: bool = False
    ) -> None:
        if not fresh:
            self._cancel(s, incident, ("reminder", "overdue"), now)
        every = self.config.policy(incident.severity).update_every
        grace = min(self.config.oncall.overdue_grace, every)
        due = self.due(incident.severity, max(base + every, now))
        # A fresh key per arming: re-arming twice in one instant must not collide; a
        # cycle still fires once, because firing marks the row itself.
        stamp = uuid.uuid4().hex[:16]
        s.add(
            Timer(
                key=f"inc{incident.id}:reminder:{stamp}",
                incident_id=incident.id,
                kind="reminder",
                step=0,
                due_at=due,
            )
        )
        s.add(
            Timer(
                key=f"inc{incident.id}:overdue:{stamp}",
                incident_id=incident.id,
                kind="overdue",
                step=0,
                due_at=self.due(incident.severity, due + grace),
            )
        )

    def _upsert(
        self,
        s: Session,
        incident: Incident,
        *,
        key: str,
        kind: str,
        step: int,
        due: datetime,
        target: str | None,
        fresh: bool = False,
    ) -> None:
        row = None if fresh else s.scalar(select(Timer).where(Timer.key == key))
        if row is None:
            s.add(
                Timer(
                    key=key,
                    incident_id=incident.id,
                    kind=kind,
                    step=step,
                    due_at=due,
                    target=target,
                )
            )
        elif row.fired_at is None and row.cancelled_at is None:
            row.due_at, row.target = due, target

    def _pending(self, s: Session, incident: Incident, kinds: tuple[str, ...]) -> list[Timer]:
        return list(
            s.scalars(
                select(Timer).where(
                    Timer.incident_id == incident.id,
                    Timer.kind.in_(kinds),
                    Timer.fired_at.is_(None),
                    Timer.cancelled_at.is_(None),
                )
            )
        )

    def _cancel(
        self, s: Session, incident: Incident, kinds: tuple[str, ...], now: datetime
    ) -> None:
        s.execute(
            update(Timer)
            .where(
                Timer.incident_id == incident.id,
                Timer.kind.in_(kinds),
                Timer.fired_at.is_(None),
                Timer.cancelled_at.is_(None),
            )
            .values(cancelled_at=now)
        )
