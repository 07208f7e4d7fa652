"""Calendar posts: the weekly handoff at the rotation's handoff time, the monthly
report (bot/report.py: the runbook's metrics and their chart, for the month just
ended), the monthly runbook review reminder and the quarterly major-incident
retrospective reminder. Timers without an incident; each firing plans the next
occurrence in the same transaction. The handoff also sends the incoming primary a test
page (bot/handoff_test.py)."""

from __future__ import annotations

from datetime import datetime, time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.handoff_test import HandoffTest
from bot.messages import Destination
from bot.oncall import OnCall
from bot.report import collect, post_report, previous_month
from bot.report_chart import render_chart
from bot.settings import Config
from bot.store.models import Incident, Timer

if TYPE_CHECKING:
    from bot.outbox import Poster

CALENDAR_KINDS = ("handoff", "monthly-summary", "runbook-review", "quarterly-retro")
QUARTER_STARTS = (1, 4, 7, 10)


class CalendarPosts:
    def __init__(self, *, config: Config, oncall: OnCall, poster: Poster) -> None:
        self.config = config
        self.oncall = oncall
        self.poster = poster
        # The incoming primary's test page at each handoff (its deadline: bot/app.py).
        self.handoff_test = HandoffTest(config=config, oncall=oncall, poster=poster)

    def ensure(self, s: Session, now: datetime) -> None:
        """Make sure the next occurrence of each calendar post is planned."""
        wanted = {
            "monthly-summary": self._next_month_day(now, time(9, 0)),
            "runbook-review": self._next_month_day(now, time(10, 0)),
            "quarterly-retro": self._next_month_day(now, time(10, 0), months=QUARTER_STARTS),
        }
        if self.oncall.plan is not None:
            wanted["handoff"] = self.oncall.plan.next_handoff(now)
        for kind, due in wanted.items():
            pending = s.scalar(
                select(Timer.id).where(
                    Timer.kind == kind, Timer.fired_at.is_(None), Timer.cancelled_at.is_(None)
                )
            )
            if pending is None:
                key = f"cal:{kind}:{due.isoformat()}"
                if s.scalar(select(Timer.id).where(Timer.key == key)) is None:
                    s.add(Timer(key=key, kind=kind, step=0, due_at=due))

    def _next_month_day(
        self, now: datetime, at: time, months: tuple[int, ...] = tuple(range(1, 13))
    ) -> datetime:
        """The first day of the next of ``months`` at ``at`` (local time) after ``now``."""
        local = now.astimezone(self.config.tz)
        year, month = local.year, local.month
        while True:
            if month in months:
                candidate = datetime(year, month, 1, at.hour, at.minute, tzinfo=self.config.tz)
                if candidate > now:
                    return candidate
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)

    def fire(self, s: Session, timer: Timer, now: datetime, late: str | None) -> None:
        """Post what a calendar timer is for, and plan its next occurrence."""
        key = f"timer{timer.id}"
        incidents = Destination.incidents()
        if timer.kind == "handoff":
            data = self.oncall.handoff_data(now, boundary=timer.due_at)
            data["late"] = late
            self.poster.post(s, None, incidents, "handoff", data, key)
            self.handoff_test.page(s, timer.due_at, now, late)
        elif timer.kind == "monthly-summary":
            # The month just ended: its report, with the chart as the post's file.
            report = collect(s, previous_month(timer.due_at, self.config.tz))
            post_report(
                s,
                poster=self.poster,
                report=report,
                chart=render_chart(report),
                destination=incidents,
                template="monthly",
                by="pira",
                now=now,
                late=late,
            )
        elif timer.kind == "quarterly-retro":
            data = {**self.last_quarter(s, timer.due_at), "late": late}
            self.poster.post(s, None, incidents, "quarterly", data, key)
        elif timer.kind == "runbook-review":
            self.poster.post(
                s,
                None,
                incidents,
                "text",
                {
                    "text": (
                        "📚 Monthly runbook review: check the severity table, escalation paths and "
                        "contact list (/escalation verify), and update the runbook with last "
                        "month's learnings." + (f" ({late})" if late else "")
                    )
                },
                key,
            )
        self.ensure(s, now)

    def last_quarter(self, s: Session, at: datetime) -> dict[str, Any]:
        """The P0/P1 incidents detected in the quarter before the one ``at`` falls in."""
        local = at.astimezone(self.config.tz)
        q = (local.month - 1) // 3  # this quarter, 0-3
        year, q = (local.year - 1, 3) if q == 0 else (local.year, q - 1)
        start = datetime(year, 3 * q + 1, 1, tzinfo=self.config.tz)
        end = datetime(local.year, 3 * ((local.month - 1) // 3) + 1, 1, tzinfo=self.config.tz)
        rows = s.scalars(
            select(Incident)
            .where(
                Incident.detected_at >= start,
                Incident.detected_at < end,
                Incident.severity.in_(("P0", "P1")),
            )
            .order_by(Incident.detected_at)
        )
        return {
            "quarter": f"{year}-Q{q + 1}",
            "incidents": [
                {
                    "number": i.number,
                    "severity": i.severity,
                    "title": i.title,
                    "detected_at": i.detected_at.isoformat(),
                    "root_cause": i.root_cause,
                }
                for i in rows
            ],
        }
