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
from bot.messages import Button, Destination
from bot.store.models import Incident
from bot.views import IncidentViews

if TYPE_CHECKING:
    from bot.outbox import Poster


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

    def room(self, s: Session, incident: Incident, text: str, key: str) -> None:
        """A line in the incident's own room."""
        self.post(
            s, incident, Destination.incident(incident.number), "text", {"text": text}, key, ()
        )

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
