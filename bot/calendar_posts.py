"""Calendar posts: the weekly handoff at the rotation's handoff time, the monthly
metrics summary and the monthly runbook review reminder. Timers without an
incident; each firing plans the next occurrence in the same transaction."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.domain.durations import humanize
from bot.domain.severity import SEVERITIES
from bot.messages import Destination
from bot.oncall import OnCall
from bot.settings import Config
from bot.store.models import Incident, Timer

if TYPE_CHECKING:
    from bot.outbox import Poster

CALENDAR_KINDS = ("handoff", "monthly-summary", "runbook-review")


class CalendarPosts:
    def __init__(self, *, config: Config, oncall: OnCall, poster: Poster) -> None:
        self.config = config
        self.oncall = oncall
        self.poster = poster

    def ensure(self, s: Session, now: datetime) -> None:
        """Make sure the next occurrence of each calendar post is planned."""
        wanted = {
            "monthly-summary": self._next_month_day(now, time(9, 0)),
            "runbook-review": self._next_month_day(now, time(10, 0)),
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

    def _next_month_day(self, now: datetime, at: time) -> datetime:
        local = now.astimezone(self.config.tz)
        year, month = local.year, local.month
        candidate = datetime.combine(local.date().replace(day=1), at, self.config.tz)
        if candidate <= now:
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            candidate = datetime(year, month, 1, at.hour, at.minute, tzinfo=self.config.tz)
        return candidate

    def fire(self, s: Session, timer: Timer, now: datetime, late: str | None) -> None:
        """Post what a calendar timer is for, and plan its next occurrence."""
        key = f"timer{timer.id}"
        incidents = Destination.incidents()
        if timer.kind == "handoff":
            data = self.oncall.handoff_data(now, boundary=timer.due_at)
            data["late"] = late
            self.poster.post(s, None, incidents, "handoff", data, key)
        elif timer.kind == "monthly-summary":
            self.poster.post(
                s,
                None,
                incidents,
                "monthly",
                {**self.monthly_summary(s, timer.due_at), "late": late},
                key,
            )
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

    def monthly_summary(self, s: Session, at: datetime) -> dict[str, Any]:
        """Counts per severity and mean time to resolve over the month before ``at``."""
        local = at.astimezone(self.config.tz)
        end = datetime(local.year, local.month, 1, tzinfo=self.config.tz)
        start = (end - timedelta(days=1)).replace(day=1)
        rows = list(
            s.scalars(
                select(Incident).where(Incident.detected_at >= start, Incident.detected_at < end)
            )
        )
        per: dict[str, dict[str, Any]] = {}
        for sev in SEVERITIES:
            mine = [i for i in rows if i.severity == sev]
            done = [i.resolved_at - i.detected_at for i in mine if i.resolved_at]
            mean = sum(done, timedelta()) / len(done) if done else None
            per[sev] = {"count": len(mine), "mttr": humanize(mean) if mean else "—"}
        return {"month": start.strftime("%Y-%m"), "total": len(rows), "per": per}
