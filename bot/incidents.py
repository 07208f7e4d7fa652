"""The incident service: one verb per runbook action, called from every surface.

Each verb is one transaction: the incident's new state, its timeline line, its
posts (through the outbox) and its timer changes commit together or not at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.domain.categories import CATEGORIES, resolved_category
from bot.domain.incident import MAX_TITLE, STATUS_LABELS, InvalidInput, check_text
from bot.domain.severity import SEVERITIES
from bot.incident_change import Change, Outcome, Pager, TimerPlanner
from bot.incident_posts import IncidentPosts
from bot.incident_records import IncidentRecords
from bot.messages import Destination
from bot.people import Actor, Directory
from bot.settings import Config
from bot.store import Store
from bot.store.models import Incident, TimelineEvent
from bot.views import IncidentViews

if TYPE_CHECKING:
    from bot.outbox import Poster


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
        pager: Pager,
        notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.config = config
        self.directory = directory
        self.clock = clock
        self.poster = poster
        self.views = views
        self.timers = timers
        self.pager = pager
        self._notify = notify
        self.records = IncidentRecords(store)
        self.posts = IncidentPosts(poster=poster, views=views, clock=clock)

    # ---- reading (the repository's) ------------------------------------------

    def get(self, number: int) -> Incident:
        return self.records.get(number)

    def list_incidents(self, *, open_only: bool = True, limit: int = 50) -> list[Incident]:
        return self.records.list_incidents(open_only=open_only, limit=limit)

    def open_numbers(self) -> list[int]:
        return self.records.open_numbers()

    def pick(self, number: int | None, room_incident: int | None, *, reading: bool = False) -> int:
        return self.records.pick(number, room_incident, reading=reading)

    @contextmanager
    def _change(
        self,
        number: int,
        by: Actor,
        source: str,
        *,
        must_be_open: bool = True,
        session: Session | None = None,
    ) -> Iterator[Change]:
        """A verb's skeleton: one transaction (or the caller's ``session``) around loading
        the incident, the change, its timeline line and posts; then the outbox woken."""
        load = self.records.load_open if must_be_open else self.records.load
        if session is not None:
            yield Change(session, load(session, number), self.clock.now(), by, source)
            return
        with self.store.transaction() as s:
            yield Change(s, load(s, number), self.clock.now(), by, source)
        self._notify()

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
        Change(s, incident, now, by, source).event("declared", f"declared [{severity}] {title}")
        data = self.views.post_data(incident, now)
        ack = self.views.buttons(incident)
        # A new number: its posts' keys cannot exist yet (no look-up, no autoflush).
        self.posts.post(
            s, incident, Destination.incidents(), "announce", data, "announce", ack, fresh=True
        )
        self.posts.post(
            s,
            incident,
            Destination.incident(number),
            "ticket",
            self.views.ticket_data(incident),
            "ticket",
            ack,
            fresh=True,
        )
        self.posts.stakeholders(s, incident, "announce")
        self.timers.on_declared(s, incident, now)
        return incident

    def ack(self, *, number: int, by: Actor, source: str) -> Outcome:
        with self._change(number, by, source) as c:
            incident = c.incident
            if incident.acknowledged_at is not None:
                return Outcome(
                    incident, f"#{number} was already acknowledged by {incident.acknowledged_by}"
                )
            incident.acknowledged_at = c.now
            incident.acknowledged_by = by.handle
            text = f"acknowledged by {by.handle}"
            if incident.commander is None:
                incident.commander = by.handle
                text += "; commander now " + by.handle
            ev = c.event("acknowledged", text)
            self.posts.room(c.s, incident, f"✋ #{number} {text}.", f"ack:{ev.id}")
            self.timers.on_acknowledged(c.s, incident, c.now)
            self.posts.refresh_announcement(c.s, incident, "ack")
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
        with self._change(number, by, source) as c:
            if c.incident.status == status:
                raise InvalidInput(f"#{number} is already {STATUS_LABELS[status]}")
            old, c.incident.status = c.incident.status, status
            label = STATUS_LABELS[status].split(" ", 1)[1]
            suffix = f": {note}" if note else ""
            ev = c.event("status", f"{old} → {status}{suffix}")
            self._updated(c, f"Status changed to {label}{suffix}", ev)
        return Outcome(c.incident, f"#{number} is now {STATUS_LABELS[status]}; update posted.")

    def post_update(self, *, number: int, text: str, by: Actor, source: str) -> Outcome:
        text = check_text(text, "the update")
        with self._change(number, by, source) as c:
            self._updated(c, text, c.event("update", text))
        return Outcome(c.incident, f"Update for #{number} posted.")

    def set_severity(self, *, number: int, severity: str, by: Actor, source: str) -> Outcome:
        with self._change(number, by, source) as c:
            old = c.incident.severity
            if old == severity:
                raise InvalidInput(f"#{number} is already {severity}")
            c.incident.severity = severity
            word = "raised" if SEVERITIES.index(severity) < SEVERITIES.index(old) else "lowered"
            ev = c.event("severity", f"{old} → {severity}")
            self._updated(c, f"Severity {word} from {old} to {severity}", ev)
            self.timers.on_severity_changed(c.s, c.incident, c.now)
            self.posts.refresh_announcement(c.s, c.incident, "severity")
            self.posts.stakeholders(c.s, c.incident, "announce")  # raised to P1: told now
        return Outcome(c.incident, f"#{number} is now {severity}; timers re-planned.")

    def set_commander(self, *, number: int, person: str, by: Actor, source: str) -> Outcome:
        text = f"#{number} commander is now @{person}."
        with self._change(number, by, source) as c:
            c.incident.commander = person
            ev = c.event("commander", f"commander: {person}")
            self.posts.room(c.s, c.incident, text, f"commander:{ev.id}")
        return Outcome(c.incident, text)

    def set_field(self, *, number: int, field: str, text: str, by: Actor, source: str) -> Outcome:
        """A ticket field shown in every post: ``impact`` or ``affected``."""
        if field not in ("impact", "affected"):
            raise ValueError(field)
        text = check_text(text, f"the {field}")
        with self._change(number, by, source) as c:
            setattr(c.incident, field, text)
            ev = c.event(field, f"{field}: {text}")
            self.posts.room(c.s, c.incident, f"#{number} {field}: {text}", f"{field}:{ev.id}")
        return Outcome(c.incident, f"#{number} {field} recorded.")

    def resolve(
        self,
        *,
        number: int,
        root_cause: str,
        resolution: str | None,
        by: Actor,
        source: str,
        session: Session | None = None,
    ) -> Outcome:
        root_cause = check_text(root_cause, "the root cause")
        resolution = check_text(resolution, "the resolution") if resolution else None
        with self._change(number, by, source, session=session) as c:
            incident = c.incident
            incident.status = "resolved"
            incident.resolved_at = c.now
            incident.root_cause = root_cause
            incident.resolution = resolution
            c.remember("current_status", f"Resolved: {root_cause}")
            details = incident.details or {}
            incident.category = resolved_category(root_cause, incident.title, details)
            ev = c.event(
                "resolved", f"resolved: {root_cause}" + (f" -- {resolution}" if resolution else "")
            )
            data = self.views.post_data(incident, c.now)
            data.update(
                root_cause=root_cause,
                resolution=resolution,
                contact=incident.commander or by.handle,
                category=CATEGORIES[incident.category],
            )
            self.posts.resolved(c.s, incident, data, f"resolved:{ev.id}")  # P0/P1: review proposed
            self.posts.room(
                c.s,
                incident,
                f"🟢 #{number} resolved after {data['duration']}. Next: the "
                "post-incident review, within 24–48 h (runbook, Phase 4).",
                f"resolved-room:{ev.id}",
            )
            self.timers.on_resolved(c.s, incident, c.now)
            self.posts.refresh_announcement(c.s, incident, "resolved")
            self.posts.stakeholders(c.s, incident, "resolved")
        return Outcome(
            incident,
            f"#{number} resolved after {data['duration']}. "
            "Schedule the post-incident review within 24–48 h.",
        )

    def set_started(self, *, number: int, at: datetime, by: Actor, source: str) -> Outcome:
        """When the problem really began (MTTD is measured from it); at the latest when
        PIRA learned of it."""
        with self._change(number, by, source, must_be_open=False) as c:
            if at > c.incident.detected_at:
                raise InvalidInput(
                    f"#{number} was detected at {c.incident.detected_at:%Y-%m-%d %H:%M} UTC: "
                    "it cannot have started after that"
                )
            c.incident.started_at = at
            c.remember("start_known", True)
            c.event("started", f"started at {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
        return Outcome(c.incident, f"#{number} started at {at:%Y-%m-%d %H:%M %Z}.")

    def set_category(self, *, number: int, category: str, by: Actor, source: str) -> Outcome:
        """The root cause's category, open or resolved (repeats are counted by it)."""
        with self._change(number, by, source, must_be_open=False) as c:
            old, c.incident.category = c.incident.category, category
            label = CATEGORIES[category]
            c.event("category", f"category: {CATEGORIES.get(old or '', 'none')} → {label}")
        return Outcome(c.incident, f"#{number} root-cause category: {label}.")

    def saw_pattern(self, *, number: int, category: str, by: Actor, source: str) -> bool:
        """/health in the incident's room matched a runbook pattern: kept for the root
        cause's category (used when the root-cause text names none), on the timeline
        once per pattern. False when it was known already (nothing written)."""
        with self._change(number, by, source) as c:
            details = c.incident.details or {}
            if details.get("seen_category") == category:
                return False
            c.remember("seen_category", category)
            c.event("health", f"/health matched the runbook pattern {CATEGORIES[category]}")
        return True

    def page(self, *, number: int, target: str, reason: str, by: Actor, source: str) -> str | None:
        """Page a role or person by hand; returns who was paged (None: said in the room)."""
        with self._change(number, by, source) as c:
            ev = c.event("page", f"paged {target}: {reason}")
            person = self.pager.page(
                c.s,
                incident=c.incident,
                target=target,
                reason=reason,
                key=f"inc{number}:page:{ev.id}",
            )
            done = f"paged @{person} by hand" if person else f"could not page {target}"
            c.remember("actions", f"{c.now:%H:%M} UTC {done}", append=True)
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
        outcome: str = "ok",
    ) -> None:
        """A timeline line (and a post in the incident room) from another part of PIRA."""
        with self._change(number, by, source, must_be_open=False) as c:
            ev = c.event(kind, text, outcome=outcome)
            if kind == "action":  # the ticket's actions taken
                c.remember("actions", f"{c.now:%H:%M} UTC {text}", append=True)
            if post:
                self.posts.room(c.s, c.incident, text, f"{kind}:{ev.id}")

    def _updated(self, c: Change, text: str, ev: TimelineEvent) -> None:
        """An Update posted: the next one is due from now; the ticket's Current Status."""
        c.incident.last_update_at = c.now
        c.remember("current_status", text)
        self.posts.update(c.s, c.incident, c.now, text, ev.id)
        self.timers.on_updated(c.s, c.incident, c.now)
