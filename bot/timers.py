"""Durable timers: the ack chain, resolution escalation, next-update reminders and
overdue call-outs, calendar posts.

Design (why not one APScheduler job per timer): every timer is a row of the
``timers`` table, planned in the same transaction as the incident change that
causes it. So a declaration and its timers commit together (nothing half-done),
a thousand declarations in one transaction cost one commit, not one per job, and
a timer is marked fired in the same commit as the posts it makes: run twice
(a crash after the commit but before APScheduler noted the run), it finds itself
fired and does nothing. APScheduler (``AsyncIOScheduler`` with a SQLAlchemy job
store in the same database) holds one durable job, ``bot.timers:tick``, which
fires every due row; ``misfire_grace_time=None`` and ``coalesce`` mean a tick
missed while the bot was down runs once when it is back, never skipped. A timer
that came due while the bot was down fires then, marked "late by …".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.domain.durations import format_duration, humanize
from bot.domain.incident import late_text
from bot.domain.severity import SEVERITIES
from bot.messages import Destination
from bot.oncall import OnCall
from bot.settings import Config
from bot.store import Store
from bot.store.models import Incident, Timer
from bot.views import IncidentViews

if TYPE_CHECKING:
    from bot.outbox import Poster

log = logging.getLogger("pira.timers")

LATE_AFTER = timedelta(seconds=2)
INCIDENT_KINDS = ("page", "escalate", "reminder", "overdue")
CALENDAR_KINDS = ("handoff", "monthly-summary", "runbook-review")

JOB_ID = "pira-timers"


class Running:
    """The Timers of this process that a scheduler job may call, by key.

    APScheduler stores a job by the textual reference of its function and its
    arguments, so the stored job cannot hold the Timers object: it holds a key,
    and :func:`tick` finds the Timers here. Each Timers registers itself while its
    scheduler runs (explicitly, in start/stop), under a key of its own, so two
    apps in one process (tests with two replicas) never reach each other's."""

    _by_key: ClassVar[dict[str, Timers]] = {}

    @classmethod
    def add(cls, timers: Timers) -> str:
        key = uuid.uuid4().hex
        cls._by_key[key] = timers
        return key

    @classmethod
    def remove(cls, key: str) -> None:
        cls._by_key.pop(key, None)

    @classmethod
    def get(cls, key: str) -> Timers | None:
        return cls._by_key.get(key)


async def tick(key: str = "") -> None:
    """The APScheduler job: fire every timer that is due."""
    timers = Running.get(key)
    if timers is not None:
        await timers.fire_due()


class Timers:
    """Plans timers (inside the callers' transactions) and fires them (on the leader)."""

    def __init__(
        self,
        *,
        store: Store,
        config: Config,
        clock: Clock,
        oncall: OnCall,
        poster: Poster,
        views: IncidentViews,
        notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.oncall = oncall
        self.poster = poster
        self.views = views
        self._notify = notify
        self.scheduler: AsyncIOScheduler | None = None
        self._running_key: str | None = None
        self._lock = asyncio.Lock()

    # ---- planning (TimerPlanner) ----------------------------------------------

    def on_declared(self, s: Session, incident: Incident, now: datetime) -> None:
        # A new incident has no timers yet: plan without looking any up (no query, no
        # autoflush), so a batch of declarations costs inserts only.
        self._plan_chain(s, incident, fresh=True)
        self._plan_escalations(s, incident, fresh=True)
        self._rearm_reminder(s, incident, base=incident.last_update_at, now=now, fresh=True)

    def on_acknowledged(self, s: Session, incident: Incident, now: datetime) -> None:
        self._cancel(s, incident, ("page",), now)

    def on_updated(self, s: Session, incident: Incident, now: datetime) -> None:
        self._rearm_reminder(s, incident, base=now, now=now)

    def on_severity_changed(self, s: Session, incident: Incident, now: datetime) -> None:
        self._plan_chain(s, incident)
        self._plan_escalations(s, incident)
        self._rearm_reminder(s, incident, base=incident.last_update_at, now=now)

    def on_resolved(self, s: Session, incident: Incident, now: datetime) -> None:
        self._cancel(s, incident, INCIDENT_KINDS, now)

    def _plan_chain(self, s: Session, incident: Incident, fresh: bool = False) -> None:
        """The ack chain, planned whole from the declaration: step k is paged unless
        someone acknowledged before its time. Steps already paged stay paged."""
        if incident.acknowledged_at is not None:
            return
        policy = self.config.policy(incident.severity)
        if policy.page_after is None:
            if not fresh:
                self._cancel(s, incident, ("page",), self.clock.now())
            return
        due = incident.detected_at + policy.page_after
        for step, link in enumerate(self.config.oncall.chain):
            self._upsert(
                s,
                incident,
                key=f"inc{incident.id}:page:{step}",
                kind="page",
                step=step,
                due=due,
                target=link.role,
                fresh=fresh,
            )
            due += link.respond_within.get(incident.severity, policy.respond_within)  # type: ignore[call-overload]

    def _plan_escalations(self, s: Session, incident: Incident, fresh: bool = False) -> None:
        policy = self.config.policy(incident.severity)
        wanted: dict[str, tuple[datetime, str, int]] = {}
        for step, trigger in enumerate(policy.escalate):
            wanted.setdefault(
                f"inc{incident.id}:escalate:{trigger.to}",
                (incident.detected_at + trigger.after, trigger.to, step),
            )
        for row in [] if fresh else self._pending(s, incident, ("escalate",)):
            if row.key not in wanted:
                row.cancelled_at = self.clock.now()
        for key, (due, target, step) in wanted.items():
            self._upsert(
                s,
                incident,
                key=key,
                kind="escalate",
                step=step,
                due=due,
                target=target,
                fresh=fresh,
            )

    def _rearm_reminder(
        self, s: Session, incident: Incident, *, base: datetime, now: datetime, fresh: bool = False
    ) -> None:
        if not fresh:
            self._cancel(s, incident, ("reminder", "overdue"), now)
        every = self.config.policy(incident.severity).update_every
        grace = min(self.config.oncall.overdue_grace, every)
        due = max(base + every, now)
        # A fresh key per arming: re-arming twice in one instant must not collide; a
        # cycle still fires once, because firing marks the row itself.
        stamp = uuid.uuid4().hex[:16]
        s.add(
            Timer(
                key=f"inc{incident.id}:reminder:{stamp}",
                incident_id=incident.id,
                kind="reminder",
                step=0,
                due_at=due,
            )
        )
        s.add(
            Timer(
                key=f"inc{incident.id}:overdue:{stamp}",
                incident_id=incident.id,
                kind="overdue",
                step=0,
                due_at=due + grace,
            )
        )

    def _upsert(
        self,
        s: Session,
        incident: Incident,
        *,
        key: str,
        kind: str,
        step: int,
        due: datetime,
        target: str | None,
        fresh: bool = False,
    ) -> None:
        row = None if fresh else s.scalar(select(Timer).where(Timer.key == key))
        if row is None:
            s.add(
                Timer(
                    key=key,
                    incident_id=incident.id,
                    kind=kind,
                    step=step,
                    due_at=due,
                    target=target,
                )
            )
        elif row.fired_at is None and row.cancelled_at is None:
            row.due_at, row.target = due, target

    def _pending(self, s: Session, incident: Incident, kinds: tuple[str, ...]) -> list[Timer]:
        return list(
            s.scalars(
                select(Timer).where(
                    Timer.incident_id == incident.id,
                    Timer.kind.in_(kinds),
                    Timer.fired_at.is_(None),
                    Timer.cancelled_at.is_(None),
                )
            )
        )

    def _cancel(
        self, s: Session, incident: Incident, kinds: tuple[str, ...], now: datetime
    ) -> None:
        s.execute(
            update(Timer)
            .where(
                Timer.incident_id == incident.id,
                Timer.kind.in_(kinds),
                Timer.fired_at.is_(None),
                Timer.cancelled_at.is_(None),
            )
            .values(cancelled_at=now)
        )

    def ensure_calendar(self, s: Session, now: datetime) -> None:
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

    # ---- firing --------------------------------------------------------------

    async def fire_due(self, limit: int = 500) -> int:
        """Fire every due timer once. Safe to call concurrently and repeatedly."""
        async with self._lock:
            fired = await asyncio.to_thread(self._fire_due, limit)
        if fired:
            self._notify()
        return fired

    def _fire_due(self, limit: int) -> int:
        now = self.clock.now()
        with self.store.read() as s:
            ids = list(
                s.scalars(
                    select(Timer.id)
                    .where(
                        Timer.fired_at.is_(None),
                        Timer.cancelled_at.is_(None),
                        Timer.due_at <= now,
                    )
                    .order_by(Timer.due_at, Timer.id)
                    .limit(limit)
                )
            )
        fired = 0
        for timer_id in ids:
            try:
                fired += self._fire_one(timer_id)
            except Exception:  # one bad timer must not hold back the others
                log.exception("timer failed", extra={"timer": timer_id})
        return fired

    def _fire_one(self, timer_id: int) -> int:
        with self.store.transaction() as s:
            timer = s.get(Timer, timer_id, with_for_update=True)
            if timer is None or timer.fired_at is not None or timer.cancelled_at is not None:
                return 0
            now = self.clock.now()
            lateness = now - timer.due_at
            late = late_text(lateness) if lateness > LATE_AFTER else None
            timer.fired_at = now
            if timer.incident_id is None:
                self._fire_calendar(s, timer, now, late)
            else:
                incident = s.get(Incident, timer.incident_id)
                if incident is None or not incident.is_open:
                    return 0  # resolved meanwhile: nothing to do
                self._fire_incident(s, timer, incident, now, late)
            log.info(
                "timer fired",
                extra={
                    "key": timer.key,
                    "kind": timer.kind,
                    "late_s": round(lateness.total_seconds(), 1),
                },
            )
            return 1

    def _fire_incident(
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
            self.oncall.page(
                s,
                incident=incident,
                target=timer.target or "primary",
                reason=reason,
                key=key,
                late=late,
                once=timer.step > 0,
            )
        elif timer.kind == "escalate":
            after = next((t.after for t in policy.escalate if t.to == timer.target), None)
            span = format_duration(after) if after is not None else "its deadline"
            reason = f"Escalation: #{incident.number} not resolved after {span}."
            self.oncall.page(
                s,
                incident=incident,
                target=timer.target or "team_lead",
                reason=reason,
                key=key,
                late=late,
                once=True,
            )
        elif timer.kind == "reminder":
            who = incident.commander or self.oncall.who("primary") or incident.reporter
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
            )
        elif timer.kind == "overdue":
            data = self.views.post_data(incident, now)
            data.update(
                overdue=humanize(now - incident.last_update_at - policy.update_every), late=late
            )
            self.poster.post(s, incident.id, Destination.incidents(), "overdue", data, key)
            # Keep reminding until someone updates: the next cycle starts now.
            self._rearm_reminder(s, incident, base=now, now=now)

    def _fire_calendar(self, s: Session, timer: Timer, now: datetime, late: str | None) -> None:
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
        self.ensure_calendar(s, now)

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

    # ---- the scheduler (leader only) -------------------------------------------

    def plan_calendar(self) -> None:
        with self.store.transaction() as s:
            self.ensure_calendar(s, self.clock.now())

    async def start(self, tick_seconds: float = 1.0) -> None:
        self.plan_calendar()
        self._running_key = Running.add(self)
        scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.store.engine)},
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
            timezone="UTC",
        )
        scheduler.add_job(
            f"{__name__}:tick",
            "interval",
            seconds=tick_seconds,
            args=[self._running_key],
            id=JOB_ID,
            replace_existing=True,
        )
        scheduler.start()
        # The job of versions before the explicit registry (its argument named no key).
        with contextlib.suppress(JobLookupError):
            scheduler.remove_job("pira-timers-default")
        self.scheduler = scheduler
        await self.fire_due()  # what came due while the bot was down, at once

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        if self._running_key is not None:
            Running.remove(self._running_key)
            self._running_key = None
