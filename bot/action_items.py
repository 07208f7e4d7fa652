"""Action items: the runbook's follow-ups of an incident (Phase 4), with an owner and a
due date, listed most urgent first (the incident's severity, then the due date)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from bot import audit
from bot.clock import Clock
from bot.domain.incident import InvalidInput, check_text
from bot.domain.severity import SEVERITIES
from bot.incident_records import IncidentRecords
from bot.people import Actor
from bot.store import Store
from bot.store.models import ActionItem, TimelineEvent

MAX_LISTED = 50


@dataclass(frozen=True)
class Item:
    """An action item as the chat shows it."""

    id: int
    incident: int
    severity: str
    text: str
    owner: str | None
    due: date | None
    done: bool


class ActionItems:
    def __init__(self, *, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.records = IncidentRecords(store)

    def add(
        self,
        *,
        number: int,
        text: str,
        owner: str | None,
        due: date | None,
        by: Actor,
        source: str,
    ) -> Item:
        text = check_text(text, "the action item", 500)
        now = self.clock.now()
        with self.store.transaction() as s:
            incident = self.records.load(s, number)
            item = ActionItem(
                incident_id=incident.id,
                text=text,
                owner=owner,
                due=due,
                created_at=now,
                created_by=by.handle,
            )
            s.add(item)
            s.flush()
            line = f"action item {item.id}: {text}"
            _record(s, incident.id, now, by, source, line)
            return _item(item, incident.number, incident.severity)

    def done(self, *, item_id: int, by: Actor, source: str) -> Item:
        now = self.clock.now()
        with self.store.transaction() as s:
            item = s.get(ActionItem, item_id, options=[selectinload(ActionItem.incident)])
            if item is None:
                raise InvalidInput(f"there is no action item {item_id}")
            if item.done_at is not None:
                raise InvalidInput(f"action item {item_id} was done already, by {item.done_by}")
            item.done_at, item.done_by = now, by.handle
            line = f"action item {item_id} done: {item.text}"
            _record(s, item.incident_id, now, by, source, line)
            return _item(item, item.incident.number, item.incident.severity)

    def list(self, *, open_only: bool = True) -> list[Item]:
        """Most urgent first: the incident's severity, then the due date (none last)."""
        with self.store.read() as s:
            query = select(ActionItem).options(selectinload(ActionItem.incident))
            if open_only:
                query = query.where(ActionItem.done_at.is_(None))
            items = [_item(i, i.incident.number, i.incident.severity) for i in s.scalars(query)]
        items.sort(key=lambda i: (i.done, SEVERITIES.index(i.severity), i.due or date.max, i.id))
        return items[:MAX_LISTED]


def _item(item: ActionItem, number: int, severity: str) -> Item:
    return Item(
        item.id, number, severity, item.text, item.owner, item.due, item.done_at is not None
    )


def _record(s: Session, incident_id: int, now: datetime, by: Actor, source: str, text: str) -> None:
    """The incident's timeline line, and the command's audit row in the same commit."""
    audit.join(s, now, "ok", text)
    s.add(
        TimelineEvent(
            incident_id=incident_id,
            at=now,
            actor=by.handle,
            source=source,
            kind="action-item",
            text=text,
        )
    )
