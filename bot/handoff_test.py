"""The handoff test page: at each weekly handoff the incoming primary gets a test page
(a direct message with an Acknowledge button, ``/escalation ack``); unacknowledged
within ``oncall.handoff_test.ack_within``, the team lead (else the secondary) is told
by direct message and #incidents gets a line.

The page's state is its deadline timer (kind ``handoff-test``, ``target`` the person):
planned in the handoff's firing transaction, cancelled by the acknowledgement, fired
(once, in the commit of its posts) by bot/timers.py when it was not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.domain.durations import format_duration
from bot.messages import Button, Destination
from bot.settings import Config
from bot.store.models import Timer

if TYPE_CHECKING:
    from bot.oncall import OnCall
    from bot.outbox import Poster
    from bot.store import Store

KIND = "handoff-test"
TEMPLATE = "test_page"
ACK = "/escalation ack"


@dataclass(frozen=True)
class TestAck:
    """What ``/escalation ack`` did: ``acknowledged`` (in time), ``late`` (after the
    deadline: the lead was told already) or ``none`` (no test page of theirs)."""

    status: str
    due: datetime | None = None


class HandoffTest:
    def __init__(self, *, config: Config, oncall: OnCall, poster: Poster) -> None:
        self.config = config
        self.oncall = oncall
        self.poster = poster

    def _lead(self, s: Session, at: datetime) -> tuple[str | None, str]:
        """Who is told of a missed test page: the team lead, else the secondary."""
        lead = self.oncall.who("team_lead", at, session=s)
        if lead is not None:
            return lead, "team lead"
        return self.oncall.who("secondary", at, session=s), "secondary"

    def page(self, s: Session, boundary: datetime, now: datetime, late: str | None) -> None:
        """At the handoff at ``boundary`` (in its firing transaction): the incoming
        primary's test page, and its deadline timer."""
        settings = self.config.oncall.handoff_test
        if not settings.enabled:
            return
        person = self.oncall.who("primary", boundary, session=s)
        if person is None:
            return
        key = f"{KIND}:{boundary.isoformat()}"
        if s.scalar(select(Timer.id).where(Timer.key == key)) is not None:
            return  # planned already (a handoff fired again)
        due = now + settings.ack_within
        s.add(Timer(key=key, kind=KIND, step=0, target=person, due_at=due))
        lead, _ = self._lead(s, boundary)
        data: dict[str, Any] = {
            "kind": "page",
            "person": person,
            "within": format_duration(settings.ack_within),
            "due": due.isoformat(),
            "lead": lead if lead != person else None,
            "late": late,
        }
        ack = (Button("Acknowledge", ACK, "primary"),)
        sent = self.poster.post(s, None, Destination.dm(person), TEMPLATE, data, f"{key}:dm", ack)
        if not sent:
            self.poster.post(
                s,
                None,
                Destination.incidents(),
                TEMPLATE,
                {"kind": "unsent", "person": person},
                f"{key}:unsent",
            )

    def expire(self, s: Session, timer: Timer, now: datetime, late: str | None) -> None:
        """The deadline passed unacknowledged (an acknowledged page's timer is
        cancelled): the lead is told, and #incidents."""
        person = timer.target or "?"
        lead, lead_role = self._lead(s, timer.due_at)
        if lead == person:
            lead = None
        data: dict[str, Any] = {
            "kind": "missed",
            "person": person,
            "within": format_duration(self.config.oncall.handoff_test.ack_within),
            "lead": lead,
            "lead_role": lead_role,
            "late": late,
            "to_lead": False,
        }
        key = f"timer{timer.id}"
        if lead is not None:
            self.poster.post(
                s, None, Destination.dm(lead), TEMPLATE, {**data, "to_lead": True}, f"{key}:lead"
            )
        self.poster.post(s, None, Destination.incidents(), TEMPLATE, data, f"{key}:room")


def acknowledge(store: Store, poster: Poster, *, person: str, now: datetime) -> TestAck:
    """``person`` acknowledges their latest handoff test page: its deadline timer is
    cancelled (durably: the page counts as answered). After the deadline, #incidents
    hears that they answered after all."""
    with store.transaction() as s:
        timer = s.scalar(
            select(Timer)
            .where(Timer.kind == KIND, Timer.target == person)
            .order_by(Timer.due_at.desc(), Timer.id.desc())
            .limit(1)
            .with_for_update()
        )
        if timer is None or timer.cancelled_at is not None:
            return TestAck("none") if timer is None else TestAck("acknowledged", timer.due_at)
        if timer.fired_at is None:
            timer.cancelled_at = now
            return TestAck("acknowledged", timer.due_at)
        poster.post(
            s,
            None,
            Destination.incidents(),
            TEMPLATE,
            {"kind": "late-ack", "person": person},
            f"timer{timer.id}:late-ack",
        )
        return TestAck("late", timer.due_at)
