"""Post-incident reviews (``/pir``, the runbook's Phase 4): the slot on a business day
within 24-48 h of the resolution, stored on the incident (``details["pir"]``), an
``.ics`` invite posted in the incident room, and a durable reminder before it.

Scheduling is one transaction: the incident's field, its timeline line and audit row
(:class:`bot.incident_change.Change`), the stored invite, the post and the reminder's
timer (the previous reminder cancelled) commit together. The reminder fires from
:mod:`bot.timers` (:meth:`Reviews.remind`, an aftermath timer: it fires for a resolved
incident)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import icalendar
from sqlalchemy import update
from sqlalchemy.orm import Session

from bot import files
from bot.clock import Clock
from bot.domain.business import BusinessCalendar, ReviewSlot, local_text, review_slot, review_time
from bot.domain.durations import format_duration
from bot.domain.incident import InvalidInput
from bot.incident_change import Change
from bot.incident_records import IncidentRecords
from bot.messages import Destination
from bot.people import Actor
from bot.settings import Config
from bot.store import Store
from bot.store.models import Incident, Timer

if TYPE_CHECKING:
    from bot.outbox import Poster

REMINDER = "pir-reminder"
# Timeline actors that are PIRA itself or a machine, never invited.
MACHINES = frozenset({"timer", "alert", "alertmanager", "console", "pira", "system"})
WINDOW_TEXT = "outside the runbook's 24–48 h window"


@dataclass(frozen=True)
class Review:
    """A scheduled review, for the reply."""

    number: int
    at: datetime
    outside_window: bool
    invitees: tuple[str, ...]
    version: int
    platforms: tuple[str, ...]

    @property
    def rescheduled(self) -> bool:
        return self.version > 1


class Reviews:
    def __init__(
        self,
        *,
        store: Store,
        config: Config,
        clock: Clock,
        poster: Poster,
        notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.poster = poster
        self._notify = notify
        self.calendar = BusinessCalendar(config.business, config.tz)
        self.records = IncidentRecords(store)

    def proposal(self, resolved_at: datetime, now: datetime | None = None) -> ReviewSlot:
        """The slot ``/pir`` without a time picks (the resolution post proposes it)."""
        return review_slot(self.calendar, self.config.pir, resolved_at, now)

    def schedule(self, *, number: int, when: str | None, by: Actor, source: str) -> Review:
        """Schedule (or move) incident N's review: ``when`` as a person writes it
        (:func:`bot.domain.business.review_time`), None for the proposed slot."""
        now = self.clock.now()
        pir = self.config.pir
        with self.store.transaction() as s:
            incident = self.records.load(s, number)
            if incident.is_open or incident.resolved_at is None:
                raise InvalidInput(
                    f"#{number} is not resolved yet: its post-incident review is scheduled "
                    f"after /resolve #{number}"
                )
            resolved_at = incident.resolved_at
            if when:
                at = review_time(when, now=now, tz=self.config.tz, default=pir.time)
                outside = at > resolved_at + pir.within
            else:
                slot = self.proposal(resolved_at, now)
                at, outside = slot.at, slot.outside_window
            previous = (incident.details or {}).get("pir") or {}
            version = int(previous.get("version", 0)) + 1
            invitees = invited([e.actor for e in incident.timeline], by.handle)
            c = Change(s, incident, now, by, source)
            c.remember(
                "pir",
                {
                    "at": at.isoformat(),
                    "outside_window": outside,
                    "by": by.handle,
                    "version": version,
                    "invitees": list(invitees),
                },
            )
            verb = "rescheduled" if previous else "scheduled"
            note = f" ({WINDOW_TEXT})" if outside else ""
            ev = c.event(
                "pir", f"post-incident review {verb}: {local_text(at, self.config.tz)}{note}"
            )
            stored = files.keep(
                s,
                incident_id=incident.id,
                kind="pir-invite",
                name=f"pir-{number}.ics",
                mime="text/calendar",
                content=self.invite(incident, at, invitees, version, now, by.handle),
                by=by.handle,
                now=now,
            )
            data = self.post_data(incident, c.incident.details["pir"], kind=verb, late=None)
            platforms = self.poster.post(
                s,
                incident.id,
                Destination.incident(number),
                "pir",
                data,
                f"inc{number}:pir:{ev.id}",
                file=stored.id,
            )
            self._plan_reminder(s, incident, at, now, version)
        self._notify()
        return Review(number, at, outside, invitees, version, tuple(platforms))

    def _plan_reminder(
        self, s: Session, incident: Incident, at: datetime, now: datetime, version: int
    ) -> None:
        """The review's reminder (one pending at most: a reschedule cancels the last)."""
        s.execute(
            update(Timer)
            .where(
                Timer.incident_id == incident.id,
                Timer.kind == REMINDER,
                Timer.fired_at.is_(None),
                Timer.cancelled_at.is_(None),
            )
            .values(cancelled_at=now)
        )
        s.add(
            Timer(
                key=f"inc{incident.id}:{REMINDER}:{version}:{uuid.uuid4().hex[:12]}",
                incident_id=incident.id,
                kind=REMINDER,
                step=version,
                due_at=max(at - self.config.pir.remind_before, now),
            )
        )

    def remind(self, s: Session, timer: Timer, now: datetime, late: str | None) -> None:
        """The review's reminder in the incident room, mentioning the invitees (the
        ``pir-reminder`` timer, in the transaction that marks it fired)."""
        incident = s.get(Incident, timer.incident_id)
        review = (incident.details or {}).get("pir") if incident is not None else None
        if incident is None or not review:
            return
        data = self.post_data(incident, review, kind="reminder", late=late)
        self.poster.post(
            s, incident.id, Destination.incident(incident.number), "pir", data, f"timer{timer.id}"
        )

    def post_data(
        self, incident: Incident, review: dict[str, Any], *, kind: str, late: str | None
    ) -> dict[str, Any]:
        """What templates/pir.md.j2 shows (``kind``: scheduled, rescheduled, reminder)."""
        pir = self.config.pir
        return {
            "kind": kind,
            "number": incident.number,
            "title": incident.title,
            "at": review["at"],
            "outside_window": bool(review.get("outside_window")),
            "window": WINDOW_TEXT,
            "invitees": list(review.get("invitees", [])),
            "by": review.get("by"),
            "length": format_duration(pir.length),
            "remind_before": format_duration(pir.remind_before),
            "file": f"pir-{incident.number}.ics",
            "late": late,
        }

    def invite(
        self,
        incident: Incident,
        at: datetime,
        invitees: Iterable[str],
        version: int,
        now: datetime,
        organizer: str,
    ) -> bytes:
        """The ``.ics`` invite: one VEVENT whose UID stays the incident's (a reschedule
        updates the same event: SEQUENCE is the version), times in the configured zone,
        an ATTENDEE per invitee with ``people.<name>.email``."""
        tz = self.config.tz
        cal = icalendar.Calendar()
        cal.add("prodid", "-//PIRA//post-incident review//EN")
        cal.add("version", "2.0")
        cal.add("method", "REQUEST")
        event = icalendar.Event()
        event.add("uid", f"pir-{incident.id}-{incident.number}@pira")
        event.add("sequence", version - 1)
        event.add("dtstamp", now)
        event.add("dtstart", at.astimezone(tz))
        event.add("dtend", (at + self.config.pir.length).astimezone(tz))
        event.add("summary", f"Post-incident review: #{incident.number} {incident.title}")
        event.add(
            "description",
            f"Post-incident review of incident #{incident.number} [{incident.severity}] "
            f"{incident.title} (resolved; runbook Phase 4).",
        )
        who = self.config.people.get(organizer)
        if who is not None and who.email:
            event.add("organizer", _address(who.email, who.name or organizer))
        for key in invitees:
            person = self.config.people.get(key)
            if person is not None and person.email:
                event.add("attendee", _address(person.email, person.name or key), encode=True)
        cal.add_component(event)
        cal.add_missing_timezones()
        return cal.to_ical()


def _address(email: str, name: str) -> icalendar.vCalAddress:
    address = icalendar.vCalAddress(f"mailto:{email}")
    address.params["cn"] = name
    address.params["role"] = "REQ-PARTICIPANT"
    return address


def invited(actors: Iterable[str], scheduler: str) -> tuple[str, ...]:
    """The people on an incident's timeline (in order of appearance) and who schedules
    its review; PIRA's own actors (the timers, alerts, the operator console) left out."""
    seen: dict[str, None] = {}
    for actor in [*actors, scheduler]:
        if actor and actor not in MACHINES:
            seen.setdefault(actor, None)
    return tuple(seen)
