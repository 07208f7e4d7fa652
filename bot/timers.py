"""Durable timers: the ack chain, resolution escalation, next-update reminders and
overdue call-outs, calendar posts. Planned by :mod:`bot.timer_plan` (in the
incident change's transaction), fired here; calendar posts in :mod:`bot.calendar_posts`.

Design (why not one APScheduler job per timer): every timer is a row of the
``timers`` table, planned in the same transaction as the incident change that
causes it. So a declaration and its timers commit together (nothing half-done),
a thousand declarations in one transaction cost one commit, not one per job, and
a timer is marked fired in the same commit as the posts it makes: run twice
(a crash after the commit but before APScheduler noted the run), it finds itself
fired and does nothing. APScheduler (``BackgroundScheduler`` with a SQLAlchemy job
store in the same database: its own thread does the job store's database work, never
the event loop) holds one durable job, ``bot.timers:tick``, which fires every due
row; ``misfire_grace_time=None`` and ``coalesce`` mean a tick missed while the bot
was down runs once when it is back, never skipped. A timer
that came due while the bot was down fires then, marked "late by …".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.calendar_posts import CalendarPosts
from bot.clock import Clock
from bot.domain.durations import format_duration, humanize
from bot.domain.incident import late_text
from bot.messages import Destination
from bot.oncall import OnCall
from bot.outbox import Fenced
from bot.settings import Config
from bot.store import Store
from bot.store.models import Incident, TimelineEvent, Timer
from bot.timer_plan import TimerPlan
from bot.views import IncidentViews

if TYPE_CHECKING:
    from bot.outbox import FenceCheck, Poster

log = logging.getLogger("pira.timers")

LATE_AFTER = timedelta(seconds=2)

JOB_ID = "pira-timers"

# Fires one aftermath timer in its firing transaction: (session, timer, now, late).
Aftermath = Callable[[Session, Timer, datetime, str | None], None]


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


def _whom(verb: str, person: str | None, target: str) -> str:
    if person is None:
        return f"could not page {target} (said in the room)"
    return f"{verb} @{person}" + ("" if person == target else f" ({target})")


def tick(key: str = "") -> None:
    """The APScheduler job (on the scheduler's threads): fire every timer that is due."""
    timers = Running.get(key)
    if timers is not None:
        timers.fire_here()


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
        fence: Callable[[], FenceCheck | None] = lambda: None,
        aftermath: dict[str, Aftermath] | None = None,
    ) -> None:
        self.store = store
        # Timers of an incident's aftermath (an action item's due date, the review's
        # reminder), by kind: they fire whatever the incident's state.
        self.aftermath = dict(aftermath or {})
        # The lease the firing runs under: a timer is marked fired only while this
        # replica still holds the lease it started with (bot/leader.py).
        self.fence = fence
        self.config = config
        self.clock = clock
        self.oncall = oncall
        self.poster = poster
        self.views = views
        self._notify = notify
        self.plan = TimerPlan(config=config, clock=clock)
        self.calendar = CalendarPosts(config=config, oncall=oncall, poster=poster)
        self.scheduler: BackgroundScheduler | None = None
        self._running_key: str | None = None
        self._lock = threading.Lock()  # one firing pass at a time, whichever thread
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- firing --------------------------------------------------------------

    async def fire_due(self, limit: int = 500) -> int:
        """Fire every due timer once. Safe to call concurrently and repeatedly."""
        fired = await self.store.run(self._fire_locked, limit)
        if fired:
            self._notify()
        return fired

    def fire_here(self, limit: int = 500) -> int:
        """:meth:`fire_due` from a thread of the scheduler (not the event loop's)."""
        fired = self._fire_locked(limit)
        if fired and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._notify)
        return fired

    def _fire_locked(self, limit: int) -> int:
        with self._lock:
            return self._fire_due(limit)

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
            except Fenced as exc:  # no longer the leader: the new one fires the rest
                log.warning("timers stopped: fenced", extra={"why": str(exc)})
                break
            except Exception:  # one bad timer must not hold back the others
                log.exception("timer failed", extra={"timer": timer_id})
        return fired

    def _fire_one(self, timer_id: int) -> int:
        with self.store.transaction() as s:
            fence = self.fence()
            if fence is not None:
                fence.check(s)
            timer = s.get(Timer, timer_id, with_for_update=True)
            if timer is None or timer.fired_at is not None or timer.cancelled_at is not None:
                return 0
            now = self.clock.now()
            lateness = now - timer.due_at
            late = late_text(lateness) if lateness > LATE_AFTER else None
            timer.fired_at = now
            if timer.incident_id is None:
                self.calendar.fire(s, timer, now, late)
            elif timer.kind in self.aftermath:  # after the incident: fires once resolved too
                self.aftermath[timer.kind](s, timer, now, late)
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
            # Since the Update fell due (at the next opening, for a business-time severity).
            data.update(overdue=humanize(now - self.views.next_update(incident)), late=late)
            self.poster.post(s, incident.id, Destination.incidents(), "overdue", data, key)
            self._timeline(
                s, incident, now, "overdue", f"update overdue by {data['overdue']}", late
            )
            # Keep reminding until someone updates: the next cycle starts now.
            self.plan.rearm_reminder(s, incident, base=now, now=now)

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

    # ---- the scheduler (leader only) -------------------------------------------

    def plan_calendar(self) -> None:
        with self.store.transaction() as s:
            self.calendar.ensure(s, self.clock.now())

    async def start(self, tick_seconds: float = 1.0) -> None:
        self._loop = asyncio.get_running_loop()
        await self.store.run(self._start_scheduler, tick_seconds)
        await self.fire_due()  # what came due while the bot was down, at once

    def _start_scheduler(self, tick_seconds: float) -> None:
        self.plan_calendar()
        self._running_key = Running.add(self)
        scheduler = BackgroundScheduler(
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

    async def stop(self) -> None:
        if self.scheduler is not None:
            scheduler, self.scheduler = self.scheduler, None
            await self.store.run(scheduler.shutdown, wait=False)
        if self._running_key is not None:
            Running.remove(self._running_key)
            self._running_key = None
