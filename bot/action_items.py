"""Action items: the runbook's follow-ups of an incident (Phase 4), with an owner and a
due date, listed most urgent first (the incident's severity, then the due date). An
item with a due date has a durable reminder (a timer planned with it, cancelled when
it is done): its owner is told on that date, when the working day starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from bot import audit
from bot.clock import Clock
from bot.domain.incident import InvalidInput, check_text
from bot.domain.severity import SEVERITIES
from bot.incident_records import IncidentRecords
from bot.messages import Destination
from bot.people import Actor
from bot.settings import Config
from bot.store import Store
from bot.store.models import ActionItem, TimelineEvent, Timer

if TYPE_CHECKING:
    from bot.outbox import Poster

MAX_LISTED = 50
REMINDER_KIND = "action-due"


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
    def __init__(self, *, store: Store, clock: Clock, config: Config, poster: Poster) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.poster = poster
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
            if due is not None:
                if due < now.astimezone(self.config.tz).date():
                    raise InvalidInput(f"{due.isoformat()} is in the past")
                # The owner is reminded on the due date, when the working day starts.
                opens = datetime.combine(due, self.config.business.opens, self.config.tz)
                s.add(
                    Timer(
                        key=f"action{item.id}:due",
                        incident_id=incident.id,
                        kind=REMINDER_KIND,
                        target=str(item.id),
                        due_at=max(opens, now),
                    )
                )
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
            s.execute(
                update(Timer)
                .where(Timer.key == f"action{item_id}:due", Timer.fired_at.is_(None))
                .values(cancelled_at=now)
            )
            line = f"action item {item_id} done: {item.text}"
            _record(s, item.incident_id, now, by, source, line)
            return _item(item, item.incident.number, item.incident.severity)

    def remind(self, s: Session, timer: Timer, now: datetime, late: str | None) -> None:
        """A due date came (a timer, in its firing transaction): the owner is told in a
        DM, or the incident's room when there is no owner or no way to reach them."""
        item = s.get(
            ActionItem, int(timer.target or 0), options=[selectinload(ActionItem.incident)]
        )
        if item is None or item.done_at is not None:
            return
        number = item.incident.number
        due = item.due.isoformat() if item.due else "today"
        text = (
            f"⏰ Action item {item.id} of #{number} is due ({due}): {item.text}. "
            f"/action done {item.id} once it is done." + (f" ({late})" if late else "")
        )
        key = f"timer{timer.id}"
        if item.owner and self.poster.post(
            s, item.incident_id, Destination.dm(item.owner), "text", {"text": text}, key
        ):
            return
        whom = f"@{item.owner} " if item.owner else "No owner: "
        self.poster.post(
            s,
            item.incident_id,
            Destination.incident(number),
            "text",
            {"text": whom + text},
            key + ":room",
        )

    def list(self, *, open_only: bool = True) -> list[Item]:
        with self.store.read() as s:
            return listed(s, open_only=open_only)


def listed(s: Session, *, open_only: bool = True) -> list[Item]:
    """Most urgent first: the incident's severity, then the due date (none last)."""
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
