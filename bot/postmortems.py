"""Postmortems (the runbook's Phase 4, "postmortem published"): drafted from the
incident's record as Markdown, stored and posted as a file in the incident's room;
drafted again on request (each draft a new version, the last one is what is
published); published to ``channels.stakeholders`` on request. The file, its post,
the timeline line and the command's audit row commit together."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import audit, files
from bot.clock import Clock
from bot.domain.incident import InvalidInput
from bot.incident_records import IncidentRecords
from bot.messages import Destination
from bot.people import Actor
from bot.postmortem_text import ItemLine, Line, Record, write
from bot.settings import Config
from bot.store import Store
from bot.store.models import ActionItem, Incident, StoredFile, TimelineEvent

if TYPE_CHECKING:
    from bot.outbox import Poster

KIND = "postmortem"


@dataclass(frozen=True)
class Drafted:
    number: int
    version: int
    name: str
    platforms: tuple[str, ...]


class Postmortems:
    def __init__(self, *, store: Store, clock: Clock, config: Config, poster: Poster) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.poster = poster

    def draft(self, *, number: int, by: Actor, source: str) -> Drafted:
        """Draft (again) from the record, store it and post it in the incident's room."""
        now = self.clock.now()
        with self.store.transaction() as s:
            incident = IncidentRecords.load(s, number)
            if incident.is_open:
                raise InvalidInput(
                    f"#{number} is still open: the postmortem is drafted once it is resolved"
                )
            stored, version = self._draft(s, incident, by, now)
            text = (
                f"📄 Postmortem of #{number}, draft {version}: the record is filled in; "
                "what went well, what didn't and the lessons are for the review."
            )
            platforms = self.poster.post(
                s,
                incident.id,
                Destination.incident(number),
                "text",
                {"text": text},
                f"inc{number}:postmortem:{stored.id}",
                file=stored.id,
            )
            _record(s, incident, now, by, source, "postmortem", f"postmortem draft {version}")
        return Drafted(number, version, stored.name, tuple(platforms))

    def publish(self, *, number: int, by: Actor, source: str) -> Drafted:
        """Post the latest draft (one is drafted first if there is none) to the
        stakeholders channel, with a plain-language note and nothing else."""
        now = self.clock.now()
        with self.store.transaction() as s:
            incident = IncidentRecords.load(s, number)
            if incident.is_open:
                raise InvalidInput(f"#{number} is still open: resolve it before publishing")
            stored = files.latest(s, incident_id=incident.id, kind=KIND)
            version = self._versions(s, incident)
            if stored is None:
                stored, version = self._draft(s, incident, by, now)
            data = {
                "title": incident.title,
                "severity": incident.severity,
                "started": incident.started_at.isoformat(),
            }
            platforms = self.poster.post(
                s,
                incident.id,
                Destination.stakeholders(),
                "stakeholders_postmortem",
                data,
                f"inc{number}:postmortem-published:{stored.id}",
                file=stored.id,
            )
            if not platforms:  # raised inside the transaction: nothing is kept
                raise InvalidInput(
                    "no stakeholders channel is configured (channels.stakeholders: "
                    "slack and/or telegram)"
                )
            details = dict(incident.details or {})
            details["postmortem_published"] = now.isoformat()
            incident.details = details
            line = f"postmortem draft {version} published to the stakeholders"
            _record(s, incident, now, by, source, "postmortem", line)
        return Drafted(number, version, stored.name, tuple(platforms))

    def _draft(
        self, s: Session, incident: Incident, by: Actor, now: datetime
    ) -> tuple[StoredFile, int]:
        version = self._versions(s, incident) + 1
        text = write(self._read(s, incident), tz=self.config.tz, now=now, version=version)
        stored = files.keep(
            s,
            incident_id=incident.id,
            kind=KIND,
            name=f"postmortem-{incident.number}.md",
            mime="text/markdown",
            content=text.encode("utf-8"),
            by=by.handle,
            now=now,
        )
        return stored, version

    @staticmethod
    def _versions(s: Session, incident: Incident) -> int:
        return int(
            s.scalar(
                select(func.count(StoredFile.id)).where(
                    StoredFile.incident_id == incident.id, StoredFile.kind == KIND
                )
            )
            or 0
        )

    def _read(self, s: Session, incident: Incident) -> Record:
        items = s.scalars(
            select(ActionItem).where(ActionItem.incident_id == incident.id).order_by(ActionItem.id)
        )
        return Record(
            number=incident.number,
            title=incident.title,
            severity=incident.severity,
            severity_name=self.config.policy(incident.severity).name,
            status=incident.status,
            reporter=incident.reporter,
            source=incident.source,
            commander=incident.commander,
            impact=incident.impact,
            affected=incident.affected,
            category=incident.category,
            root_cause=incident.root_cause,
            resolution=incident.resolution,
            started_at=incident.started_at,
            detected_at=incident.detected_at,
            acknowledged_at=incident.acknowledged_at,
            acknowledged_by=incident.acknowledged_by,
            resolved_at=incident.resolved_at,
            details=dict(incident.details or {}),
            timeline=[Line(e.at, e.actor, e.text) for e in incident.timeline],
            items=[
                ItemLine(
                    i.id, i.text, i.owner, i.due.isoformat() if i.due else None, bool(i.done_at)
                )
                for i in items
            ],
        )


def _record(
    s: Session, incident: Incident, now: datetime, by: Actor, source: str, kind: str, text: str
) -> None:
    """The timeline line, and the command's audit row in the same commit."""
    audit.join(s, now, "ok", text)
    s.add(
        TimelineEvent(
            incident_id=incident.id, at=now, actor=by.handle, source=source, kind=kind, text=text
        )
    )
