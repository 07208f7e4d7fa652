"""An incident's posts: the announcement, the ticket, Updates, lines in its room, and
the in-place edits that keep the announcement and ticket (and their buttons) true to
the incident's state. Stored in the outbox inside the verb's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.domain.business import review_slot
from bot.domain.incident import duration_text
from bot.messages import Button, Destination
from bot.store.models import Incident
from bot.views import IncidentViews

if TYPE_CHECKING:
    from bot.outbox import Poster

# The severities whose declaration and resolution stakeholders hear of (the runbook's
# Communication: outages and serious degradations, not every P2).
STAKEHOLDER_SEVERITIES = ("P0", "P1")
# The severities whose resolution proposes the post-incident review (P2/P3: on request).
REVIEW_PROPOSED = ("P0", "P1")


class IncidentPosts:
    def __init__(self, *, poster: Poster, views: IncidentViews, clock: Clock) -> None:
        self.poster = poster
        self.views = views
        self.clock = clock

    def post(
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
        """A post of incident N, keyed ``inc{N}:{key}`` (stored once, whoever asks)."""
        self.poster.post(
            s,
            incident.id,
            destination,
            template,
            data,
            f"inc{incident.number}:{key}",
            buttons,
            fresh=fresh,
        )

    def resolved(self, s: Session, incident: Incident, data: dict[str, Any], key: str) -> None:
        """The resolution in #incidents; a P0 or P1 proposes its post-incident review: the
        slot ``/pir`` would pick (bot/domain/business.py) and a button that schedules it."""
        buttons: tuple[Button, ...] = ()
        if incident.severity in REVIEW_PROPOSED and incident.resolved_at is not None:
            slot = review_slot(self.views.calendar, self.views.config.pir, incident.resolved_at)
            data = {**data, "review_at": slot.at.isoformat(), "review_outside": slot.outside_window}
            buttons = (Button("Schedule the review", f"/pir #{incident.number}", "primary"),)
        self.post(s, incident, Destination.incidents(), "resolved", data, key, buttons)

    def room(self, s: Session, incident: Incident, text: str, key: str) -> None:
        """A line in the incident's own room."""
        self.post(
            s, incident, Destination.incident(incident.number), "text", {"text": text}, key, ()
        )

    def stakeholders(self, s: Session, incident: Incident, what: str) -> None:
        """A plain-language post in ``channels.stakeholders`` (the runbook's "stakeholders
        notified"): P0 and P1 only, ``announce`` once, ``resolved`` only after an
        announcement. Its own templates: no commands, buttons, handles or room names."""
        details = dict(incident.details or {})
        told = bool(details.get("stakeholders_told"))
        if what == "announce" and (told or incident.severity not in STAKEHOLDER_SEVERITIES):
            return
        if what == "resolved" and not told:
            return
        data = {
            "title": incident.title,
            "severity": incident.severity,
            "started": incident.started_at.isoformat(),
            "resolved": incident.resolved_at.isoformat() if incident.resolved_at else None,
            "duration": duration_text(
                incident.started_at, incident.resolved_at or self.clock.now()
            ),
            "impact": incident.impact,
            "affected": incident.affected,
        }
        self.poster.post(
            s,
            incident.id,
            Destination.stakeholders(),
            f"stakeholders_{what}",
            data,
            f"inc{incident.number}:stakeholders:{what}",
        )
        if what == "announce":
            details["stakeholders_told"] = True
            incident.details = details

    def update(self, s: Session, incident: Incident, now: datetime, text: str, ev: int) -> None:
        """An Update (the runbook's template) in #incidents, for timeline event ``ev``."""
        data = self.views.post_data(incident, now)
        data["text"] = text
        self.post(s, incident, Destination.incidents(), "update", data, f"update:{ev}", ())

    def refresh_announcement(self, s: Session, incident: Incident, reason: str) -> None:
        """Edit the Initial Announcement and the ticket in place on platforms that can:
        they show the state and their buttons follow it (an acknowledged incident no
        longer offers Acknowledge, a resolved one nothing)."""
        data = self.views.post_data(incident, self.clock.now())
        data["acknowledged_by"] = incident.acknowledged_by
        buttons = self.views.buttons(incident)
        stamp = uuid.uuid4().hex[:16]
        n = incident.number
        for destination, template, shown, original in (
            (Destination.incidents(), "announce", data, "announce"),
            (Destination.incident(n), "ticket", self.views.ticket_data(incident), "ticket"),
        ):
            self.poster.post(
                s,
                incident.id,
                destination,
                template,
                shown,
                f"inc{n}:{original}-edit:{reason}:{stamp}",
                buttons,
                edit_of=f"inc{n}:{original}",
            )
