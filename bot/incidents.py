"""The incident service: one verb per runbook action, called from every surface.

Each verb is one transaction: the incident's new state, its timeline line, its
posts (through the outbox) and its timer changes commit together or not at all.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.domain.incident import (
    MAX_TITLE,
    STATUS_LABELS,
    InvalidInput,
    check_text,
)
from bot.messages import Button, Destination
from bot.people import Actor, Directory
from bot.settings import Config
from bot.store import Store
from bot.store.models import Incident, TimelineEvent
from bot.views import IncidentViews

if TYPE_CHECKING:
    from bot.outbox import Poster


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


class NotFound(InvalidInput):
    pass


@dataclass(frozen=True)
class Outcome:
    """What a verb did, for the reply to its caller."""

    incident: Incident
    text: str


class Incidents:
    def __init__(
        self,
        *,
        store: Store,
        config: Config,
        directory: Directory,
        clock: Clock,
        poster: Poster,
        views: IncidentViews,
        timers: TimerPlanner,
        notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.config = config
        self.directory = directory
        self.clock = clock
        self.poster = poster
        self.views = views
        self.timers = timers
        self._notify = notify

    # ---- reading ---------------------------------------------------------

    def get(self, number: int) -> Incident:
        with self.store.read() as session:
            incident = self._load(session, number)
            _ = list(incident.timeline)  # loaded before the session closes
            return incident

    def list_incidents(self, *, open_only: bool = True, limit: int = 50) -> list[Incident]:
        with self.store.read() as session:
            query = select(Incident).order_by(Incident.number.desc()).limit(limit)
            if open_only:
                query = query.where(Incident.status != "resolved")
            return list(session.scalars(query))

    def open_numbers(self) -> list[int]:
        with self.store.read() as session:
            return list(
                session.scalars(
                    select(Incident.number)
                    .where(Incident.status != "resolved")
                    .order_by(Incident.number)
                )
            )

    def pick(self, number: int | None, room_incident: int | None, *, reading: bool = False) -> int:
        """The incident a command means: ``#N``, else the room's, else the only open one;
        for ``reading`` (e.g. /timeline) with none open, the most recent one."""
        if number is not None:
            return number
        if room_incident is not None:
            return room_incident
        numbers = self.open_numbers()
        if len(numbers) == 1:
            return numbers[0]
        if not numbers:
            if reading:
                with self.store.read() as session:
                    latest = session.scalar(select(func.max(Incident.number)))
                if latest is not None:
                    return latest
                raise InvalidInput("there are no incidents yet")
            raise InvalidInput("no incident is open")
        shown = ", ".join(f"#{n}" for n in numbers[:10])
        raise InvalidInput(f"{len(numbers)} incidents are open ({shown}): say which with #N")

    # ---- verbs -----------------------------------------------------------

    def declare(
        self,
        *,
        severity: str,
        title: str,
        by: Actor,
        source: str,
        started_at: datetime | None = None,
        impact: str | None = None,
        affected: str | None = None,
        alert_group_key: str | None = None,
        details: dict[str, Any] | None = None,
        session: Session | None = None,
    ) -> Incident:
        """Store the ticket, announce it, plan its timers. ``session``: join a caller's
        transaction (several declarations in one commit)."""
        title = check_text(title, "the title", MAX_TITLE)
        declare = functools.partial(
            self._declare,
            severity=severity,
            title=title,
            by=by,
            source=source,
            started_at=started_at,
            impact=impact,
            affected=affected,
            alert_group_key=alert_group_key,
            details=details,
        )
        if session is not None:
            return declare(session)
        for attempt in range(5):
            try:
                with self.store.transaction() as s:
                    incident = declare(s)
                self._notify()
                return incident
            except IntegrityError:
                # Another replica took the same number at the same moment: take the next.
                if attempt == 4 or alert_group_key is not None:
                    raise
        raise AssertionError("unreachable")

    def _declare(
        self,
        s: Session,
        *,
        severity: str,
        title: str,
        by: Actor,
        source: str,
        started_at: datetime | None,
        impact: str | None,
        affected: str | None,
        alert_group_key: str | None,
        details: dict[str, Any] | None,
    ) -> Incident:
        now = self.clock.now()
        # Several declarations in one transaction (an alert storm) look the number up once.
        number = s.info.get("pira_next_number") or (
            (s.scalar(select(func.max(Incident.number))) or 0) + 1
        )
        s.info["pira_next_number"] = number + 1
        incident = Incident(
            number=number,
            title=title,
            severity=severity,
            status="investigating",
            reporter=by.handle,
            source=source,
            impact=impact,
            affected=affected,
            started_at=started_at or now,
            detected_at=now,
            last_update_at=now,
            alert_group_key=alert_group_key,
            details=details or {},
        )
        s.add(incident)
        s.flush()
        self._event(s, incident, by, source, "declared", f"declared [{severity}] {title}", now)
        data = self.post_data(incident, now)
        ack = self.buttons(incident)
        # A new number: its posts' keys cannot exist yet (no look-up, no autoflush).
        self._post(
            s, incident, Destination.incidents(), "announce", data, "announce", ack, fresh=True
        )
        self._post(
            s,
            incident,
            Destination.incident(number),
            "ticket",
            self.ticket_data(incident),
            "ticket",
            ack,
            fresh=True,
        )
        self.timers.on_declared(s, incident, now)
        return incident

    def ack(self, *, number: int, by: Actor, source: str) -> Outcome:
        with self.store.transaction() as s:
            now = self.clock.now()
            incident = self._load_open(s, number)
            if incident.acknowledged_at is not None:
                return Outcome(
                    incident, f"#{number} was already acknowledged by {incident.acknowledged_by}"
                )
            incident.acknowledged_at = now
            incident.acknowledged_by = by.handle
            text = f"acknowledged by {by.handle}"
            if incident.commander is None:
                incident.commander = by.handle
                text += "; commander now " + by.handle
            ev = self._event(s, incident, by, source, "acknowledged", text, now)
            self._room(s, incident, f"✋ #{number} {text}.", f"ack:{ev.id}")
            self.timers.on_acknowledged(s, incident, now)
            self._refresh_announcement(s, incident, "ack")
        self._notify()
        return Outcome(incident, f"#{number} {text}.")

    def set_status(
        self, *, number: int, status: str, note: str | None, by: Actor, source: str
    ) -> Outcome:
        if status == "resolved":
            return self.resolve(
                number=number,
                root_cause=note or "Not recorded",
                resolution=None,
                by=by,
                source=source,
            )
        with self.store.transaction() as s:
            now = self.clock.now()
            incident = self._load_open(s, number)
            if incident.status == status:
                raise InvalidInput(f"#{number} is already {STATUS_LABELS[status]}")
            old = incident.status
            incident.status = status
            label = STATUS_LABELS[status].split(" ", 1)[1]
            text = f"Status changed to {label}" + (f": {note}" if note else "")
            ev = self._event(
                s,
                incident,
                by,
                source,
                "status",
                f"{old} → {status}" + (f": {note}" if note else ""),
                now,
            )
            self._posted_update(s, incident, text, ev, now)
        self._notify()
        return Outcome(incident, f"#{number} is now {STATUS_LABELS[status]}; update posted.")

    def post_update(self, *, number: int, text: str, by: Actor, source: str) -> Outcome:
        text = check_text(text, "the update")
        with self.store.transaction() as s:
            now = self.clock.now()
            incident = self._load_open(s, number)
            ev = self._event(s, incident, by, source, "update", text, now)
            self._posted_update(s, incident, text, ev, now)
        self._notify()
        return Outcome(incident, f"Update for #{number} posted.")

    def set_severity(self, *, number: int, severity: str, by: Actor, source: str) -> Outcome:
        with self.store.transaction() as s:
            now = self.clock.now()
            incident = self._load_open(s, number)
            old = incident.severity
            if old == severity:
                raise InvalidInput(f"#{number} is already {severity}")
            incident.severity = severity
            word = "raised" if severity < old else "lowered"
            text = f"Severity {word} from {old} to {severity}"
            ev = self._event(s, incident, by, source, "severity", f"{old} → {severity}", now)
            self._posted_update(s, incident, text, ev, now)
            self.timers.on_severity_changed(s, incident, now)
            self._refresh_announcement(s, incident, "severity")
        self._notify()
        return Outcome(incident, f"#{number} is now {severity}; timers re-planned.")

    def set_commander(self, *, number: int, person: str, by: Actor, source: str) -> Outcome:
        with self.store.transaction() as s:
            now = self.clock.now()
            incident = self._load_open(s, number)
            incident.commander = person
            ev = self._event(s, incident, by, source, "commander", f"commander: {person}", now)
            self._room(s, incident, f"#{number} commander is now @{person}.", f"commander:{ev.id}")
        self._notify()
        return Outcome(incident, f"#{number} commander is now @{person}.")

    def set_impact(self, *, number: int, text: str, by: Actor, source: str) -> Outcome:
        text = check_text(text, "the impact")
        with self.store.transaction() as s:
            now = self.clock.now()
            incident = self._load_open(s, number)
            incident.impact = text
            ev = self._event(s, incident, by, source, "impact", f"impact: {text}", now)
            self._room(s, incident, f"#{number} impact: {text}", f"impact:{ev.id}")
        self._notify()
        return Outcome(incident, f"#{number} impact recorded.")

    def resolve(
        self, *, number: int, root_cause: str, resolution: str | None, by: Actor, source: str
    ) -> Outcome:
        root_cause = check_text(root_cause, "the root cause")
        resolution = check_text(resolution, "the resolution") if resolution else None
        with self.store.transaction() as s:
            now = self.clock.now()
            incident = self._load_open(s, number)
            incident.status = "resolved"
            incident.resolved_at = now
            incident.root_cause = root_cause
            incident.resolution = resolution
            ev = self._event(
                s,
                incident,
                by,
                source,
                "resolved",
                f"resolved: {root_cause}" + (f" -- {resolution}" if resolution else ""),
                now,
            )
            data = self.post_data(incident, now)
            data.update(
                root_cause=root_cause,
                resolution=resolution,
                contact=incident.commander or by.handle,
            )
            self._post(
                s, incident, Destination.incidents(), "resolved", data, f"resolved:{ev.id}", ()
            )
            self._post(
                s,
                incident,
                Destination.incident(number),
                "text",
                {
                    "text": f"🟢 #{number} resolved after {data['duration']}. Next: the "
                    "post-incident review, within 24–48 h (runbook, Phase 4)."
                },
                f"resolved-room:{ev.id}",
                (),
            )
            self.timers.on_resolved(s, incident, now)
            self._refresh_announcement(s, incident, "resolved")
        self._notify()
        return Outcome(
            incident,
            f"#{number} resolved after {data['duration']}. "
            "Schedule the post-incident review within 24–48 h.",
        )

    def page(
        self, *, number: int, target: str, reason: str, by: Actor, source: str, oncall: Pager
    ) -> str | None:
        """Page a role or person by hand; returns who was paged (None: said in the room)."""
        with self.store.transaction() as s:
            incident = self._load_open(s, number)
            ev = self._event(
                s, incident, by, source, "page", f"paged {target}: {reason}", self.clock.now()
            )
            person = oncall.page(
                s, incident=incident, target=target, reason=reason, key=f"inc{number}:page:{ev.id}"
            )
        self._notify()
        return person

    def note(
        self,
        *,
        number: int,
        text: str,
        by: Actor,
        source: str,
        kind: str = "note",
        post: bool = True,
    ) -> None:
        """A timeline line (and a post in the incident room) from another part of PIRA."""
        with self.store.transaction() as s:
            now = self.clock.now()
            incident = self._load(s, number)
            ev = self._event(s, incident, by, source, kind, text, now)
            if post:
                self._room(s, incident, text, f"{kind}:{ev.id}")
        self._notify()

    # ---- shared pieces ---------------------------------------------------

    def post_data(self, incident: Incident, now: datetime) -> dict[str, Any]:
        return self.views.post_data(incident, now)

    def ticket_data(self, incident: Incident) -> dict[str, Any]:
        return self.views.ticket_data(incident)

    buttons = staticmethod(IncidentViews.buttons)

    def post(
        self,
        session: Session,
        incident: Incident | None,
        destination: Destination,
        template: str,
        data: dict[str, Any],
        key: str,
        buttons: Sequence[Button] = (),
        edit_of: str | None = None,
        fresh: bool = False,
    ) -> list[str]:
        """Enqueue a post in the caller's transaction; returns the platforms it goes to.
        ``edit_of``: the key of an earlier post this one replaces in place."""
        return self.poster.post(
            session,
            incident.id if incident is not None else None,
            destination,
            template,
            data,
            key,
            buttons,
            edit_of=edit_of,
            fresh=fresh,
        )

    def _post(
        self,
        s: Session,
        incident: Incident,
        destination: Destination,
        template: str,
        data: dict[str, Any],
        key: str,
        buttons: Sequence[Button],
        fresh: bool = False,
    ) -> None:
        self.post(
            s,
            incident,
            destination,
            template,
            data,
            f"inc{incident.number}:{key}",
            buttons,
            fresh=fresh,
        )

    def _room(self, s: Session, incident: Incident, text: str, key: str) -> None:
        """A line in the incident's own room."""
        self._post(
            s, incident, Destination.incident(incident.number), "text", {"text": text}, key, ()
        )

    def _refresh_announcement(self, s: Session, incident: Incident, reason: str) -> None:
        """Edit the Initial Announcement and the ticket in place on platforms that can:
        they show the state and their buttons follow it (an acknowledged incident no
        longer offers Acknowledge, a resolved one nothing)."""
        data = self.post_data(incident, self.clock.now())
        data["acknowledged_by"] = incident.acknowledged_by
        buttons = self.buttons(incident)
        stamp = uuid.uuid4().hex[:16]
        n = incident.number
        for destination, template, shown, original in (
            (Destination.incidents(), "announce", data, "announce"),
            (Destination.incident(n), "ticket", self.ticket_data(incident), "ticket"),
        ):
            self.post(
                s,
                incident,
                destination,
                template,
                shown,
                f"inc{n}:{original}-edit:{reason}:{stamp}",
                buttons,
                edit_of=f"inc{n}:{original}",
            )

    def _posted_update(
        self, s: Session, incident: Incident, text: str, ev: TimelineEvent, now: datetime
    ) -> None:
        incident.last_update_at = now
        data = self.post_data(incident, now)
        data["text"] = text
        self._post(s, incident, Destination.incidents(), "update", data, f"update:{ev.id}", ())
        self.timers.on_updated(s, incident, now)

    def _event(
        self,
        s: Session,
        incident: Incident,
        by: Actor,
        source: str,
        kind: str,
        text: str,
        now: datetime,
    ) -> TimelineEvent:
        ev = TimelineEvent(
            incident_id=incident.id, at=now, actor=by.handle, source=source, kind=kind, text=text
        )
        s.add(ev)
        s.flush()
        return ev

    def _load(self, s: Session, number: int) -> Incident:
        incident = s.scalar(select(Incident).where(Incident.number == number))
        if incident is None:
            raise NotFound(f"there is no incident #{number}")
        return incident

    def _load_open(self, s: Session, number: int) -> Incident:
        incident = self._load(s, number)
        if not incident.is_open:
            raise InvalidInput(f"#{number} is already resolved")
        return incident
