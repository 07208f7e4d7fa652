"""What an incident's timer does when it fires: a page down the ack chain, an
escalation, a next-update reminder, an overdue call-out (and the next cycle), each
with its line on the incident's timeline (actor: the timer). Called by
:class:`bot.timers.Timers` inside the transaction that marks the timer fired."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from bot.domain.durations import format_duration, humanize
from bot.messages import Destination
from bot.oncall import OnCall
from bot.settings import Config
from bot.store.models import Incident, TimelineEvent, Timer
from bot.timer_plan import TimerPlan
from bot.views import IncidentViews

if TYPE_CHECKING:
    from bot.outbox import Poster


def _whom(verb: str, person: str | None, target: str) -> str:
    if person is None:
        return f"could not page {target} (said in the room)"
    return f"{verb} @{person}" + ("" if person == target else f" ({target})")


class IncidentTimers:
    def __init__(
        self,
        *,
        config: Config,
        oncall: OnCall,
        poster: Poster,
        views: IncidentViews,
        plan: TimerPlan,
    ) -> None:
        self.config = config
        self.oncall = oncall
        self.poster = poster
        self.views = views
        self.plan = plan

    def fire(
        self, s: Session, timer: Timer, incident: Incident, now: datetime, late: str | None
    ) -> None:
        key = f"timer{timer.id}"
        policy = self.config.policy(incident.severity)
        if timer.kind == "page":
            chain = self.config.oncall.chain
            if timer.step == 0:
                reason = f"New [{incident.severity}] incident: please acknowledge."
            else:
                reason = (
                    f"Step {timer.step + 1}/{len(chain)} of the ack chain: nobody "
                    f"acknowledged #{incident.number} in time."
                )
            target = timer.target or "primary"
            person = self.oncall.page(
                s,
                incident=incident,
                target=target,
                reason=reason,
                key=key,
                late=late,
                once=timer.step > 0,
            )
            self._timeline(s, incident, now, "paged", _whom("paged", person, target), late)
        elif timer.kind == "escalate":
            after = next((t.after for t in policy.escalate if t.to == timer.target), None)
            span = format_duration(after) if after is not None else "its deadline"
            reason = f"Escalation: #{incident.number} not resolved after {span}."
            target = timer.target or "team_lead"
            person = self.oncall.page(
                s,
                incident=incident,
                target=target,
                reason=reason,
                key=key,
                late=late,
                once=True,
            )
            self._timeline(
                s, incident, now, "escalated", _whom("escalated to", person, target), late
            )
        elif timer.kind == "reminder":
            who = incident.commander or self.oncall.who("primary", session=s) or incident.reporter
            self.poster.post(
                s,
                incident.id,
                Destination.incident(incident.number),
                "reminder",
                {
                    "number": incident.number,
                    "person": who,
                    "late": late,
                    "every": format_duration(policy.update_every),
                },
                key,
                fresh=True,  # a timer fires once: its posts' keys are new
            )
        elif timer.kind == "overdue":
            data = self.views.post_data(incident, now)
            # Since the Update fell due (at the next opening, for a business-time severity).
            data.update(overdue=humanize(now - self.views.next_update(incident)), late=late)
            self.poster.post(
                s, incident.id, Destination.incidents(), "overdue", data, key, fresh=True
            )
            self._timeline(
                s, incident, now, "overdue", f"update overdue by {data['overdue']}", late
            )
            # Keep reminding until someone updates: the next cycle starts now.
            self.plan.rearm_reminder(s, incident, base=now, now=now)
        elif timer.kind == "release":
            self._release(s, incident, now, late)

    def _release(self, s: Session, incident: Incident, now: datetime, late: str | None) -> None:
        """The maintenance that held the incident is over: page it now unless someone
        acknowledged it meanwhile; its escalations count from now."""
        self.plan.on_released(s, incident, now)
        if self.config.policy(incident.severity).page_after is None:
            text = (
                f"🔧 Maintenance is over; #{incident.number} is {incident.severity}, which "
                "pages nobody (the severity table)."
            )
        elif incident.acknowledged_at is None:
            text = (
                f"🔧 Maintenance is over and #{incident.number} is still open and "
                "unacknowledged: paging the on-call now."
            )
        else:
            text = (
                f"🔧 Maintenance is over; #{incident.number} was acknowledged: nobody is "
                "paged, its escalations count from now."
            )
        self.poster.post(
            s,
            incident.id,
            Destination.incident(incident.number),
            "text",
            {"text": text},
            f"inc{incident.number}:released",
            fresh=True,
        )
        self._timeline(s, incident, now, "released", "maintenance over: pages released", late)

    @staticmethod
    def _timeline(
        s: Session, incident: Incident, now: datetime, kind: str, text: str, late: str | None
    ) -> None:
        """What a timer did, on the incident's timeline (its actor: the timer)."""
        s.add(
            TimelineEvent(
                incident_id=incident.id,
                at=now,
                actor="timer",
                source="timer",
                kind=kind,
                text=text + (f" ({late})" if late else ""),
            )
        )
