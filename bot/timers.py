"""Durable timers: the ack chain, resolution escalation, next-update reminders and
overdue call-outs, calendar posts, aftermath reminders. Planned by
:mod:`bot.timer_plan` (in the incident change's transaction), fired here; what each
kind does is in :mod:`bot.timer_kinds` and :mod:`bot.calendar_posts`.

Design (why not one APScheduler job per timer): every timer is a row of the
``timers`` table, planned in the same transaction as the incident change that
causes it. So a declaration and its timers commit together (nothing half-done),
a thousand declarations in one transaction cost one commit, not one per job, and
a timer is marked fired in the same commit as the posts it makes: run twice
(a crash after the commit but before APScheduler noted the run), it finds itself
fired and does nothing. Due timers are fired in batches (``BATCH`` a transaction,
their rows and incidents read with one query each; a batch that fails is fired
again one timer at a time, so one bad timer holds back no other).

APScheduler (``BackgroundScheduler`` with a SQLAlchemy job store in the same
database: its own thread does the job store's database work, never the event loop)
holds one durable job, ``bot.timers:tick``, which fires every due row. Its trigger
polls every ``POLL``; its next run is moved to the earliest due timer whenever that
is sooner (:mod:`bot.timer_wake`: after every commit that plans a timer, and after
every pass), so a timer fires at its time, not on the next poll.
``misfire_grace_time=None`` and ``coalesce`` mean a run missed while the bot was
down happens once when it is back, never skipped. A timer that came due while the
bot was down fires then, marked "late by …".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.calendar_posts import CalendarPosts
from bot.clock import Clock
from bot.domain.incident import late_text
from bot.oncall import OnCall
from bot.outbox import Fenced
from bot.settings import Config
from bot.store import Store
from bot.store.models import Incident, Timer
from bot.timer_kinds import IncidentTimers
from bot.timer_notify import PlanListener, announce_plans
from bot.timer_plan import TimerPlan
from bot.timer_wake import Wake
from bot.views import IncidentViews

if TYPE_CHECKING:
    from bot.outbox import FenceCheck, Poster

log = logging.getLogger("pira.timers")

LATE_AFTER = timedelta(seconds=2)

JOB_ID = "pira-timers"
# Due timers fired in one transaction (a storm of 10,000 due at once: 100 commits).
BATCH = 100
# The scheduler's poll (a safety net, and timers planned by other replicas); timers
# planned here wake it at their due time (bot/timer_wake.py).
POLL = timedelta(seconds=1)

# Fires one aftermath timer in its firing transaction: (session, timer, now, late).
Aftermath = Callable[[Session, Timer, datetime, str | None], None]


class _SkippedPoll(logging.Filter):
    """The firing job runs until nothing more is due (a burst, a steady stream): the
    poll that comes meanwhile is skipped, as it should be, and that is not a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


_SKIPPED_POLL = _SkippedPoll()


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


def tick(key: str = "") -> None:
    """The APScheduler job (on the scheduler's threads): fire every timer that is due."""
    timers = Running.get(key)
    if timers is not None:
        timers.fire_here()


_EARLIEST = select(func.min(Timer.due_at)).where(  # the earliest timer still to fire
    Timer.fired_at.is_(None), Timer.cancelled_at.is_(None)
)


@dataclass
class _Batch:
    """What one firing transaction did (a batch that fails is fired again one by one)."""

    ids: list[int] = field(default_factory=list)
    fired: int = 0
    earliest: datetime | None = None


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
        firing: Callable[[bool], None] = lambda _on: None,
        fence: Callable[[], FenceCheck | None] = lambda: None,
        aftermath: dict[str, Aftermath] | None = None,
    ) -> None:
        self.store = store
        # Timers that fire whatever the incident's state (an action item's due date, the
        # review's reminder, an auto-resolution) or that have none (the Watchdog's), by
        # kind: each decides what is left to do.
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
        # Told when due timers start and stop being fired (OutboxWorker.firing).
        self._firing = firing
        self.plan = TimerPlan(config=config, clock=clock)
        self.kinds = IncidentTimers(
            config=config, oncall=oncall, poster=poster, views=views, plan=self.plan
        )
        self.calendar = CalendarPosts(config=config, oncall=oncall, poster=poster)
        self.scheduler: BackgroundScheduler | None = None
        self._running_key: str | None = None
        self._lock = threading.Lock()  # one firing pass at a time, whichever thread
        self.wake = Wake(move=self._move, poll=POLL)
        # PostgreSQL: plans made on any replica tell the leader (bot/timer_notify.py).
        self.listener: PlanListener | None = None
        self._listening: asyncio.Task[None] | None = None
        if store.engine.dialect.name == "postgresql":
            announce_plans(store.sessions)
            self.listener = PlanListener(store.engine.url, self._planned_elsewhere)

    # ---- firing --------------------------------------------------------------

    async def fire_due(self, limit: int = 500) -> int:
        """Fire every due timer once. Safe to call concurrently and repeatedly."""
        return await self.store.run(self._fire_locked, limit)

    def fire_here(self, limit: int = 500) -> int:
        """:meth:`fire_due` from a thread of the scheduler (not the event loop's)."""
        return self._fire_locked(limit)

    def _fire_locked(self, limit: int) -> int:
        """Passes until nothing more is due (timers planned meanwhile included), then
        the scheduler is armed for the next due timer (bot/timer_wake.py)."""
        with self._lock:
            self.wake.begin_pass()
            fired = 0
            try:
                while True:
                    self._firing(True)
                    try:
                        done, earliest = self._fire_due(limit)
                    finally:
                        self._firing(False)
                    fired += done
                    if done:
                        # The outbox sends them now: under a steady stream of timers the
                        # pass goes on for long, and its posts waited for the outbox's
                        # poll, then went out in a burst that made the next timers late.
                        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                            self._notify()  # thread-safe (OutboxWorker.notify)
                    wait = self.wake.end_pass(self.clock.now(), earliest, done > 0)
                    if wait is None:
                        return fired
                    if wait > 0:
                        time.sleep(wait)
            except BaseException:
                self.wake.abort_pass()
                raise

    def _earliest(self) -> datetime | None:
        with self.store.read() as s:
            return s.scalar(_EARLIEST)

    def _fire_due(self, limit: int) -> tuple[int, datetime | None]:
        """Fire what is due now, a batch per transaction, up to ``limit`` timers; how
        many fired, and the earliest timer left pending (read by the last batch)."""
        now = self.clock.now()
        fired = seen = 0
        while True:
            batch = _Batch()
            size = min(BATCH, limit - seen)
            try:
                self._fire_batch(now, size, batch)
            except Fenced as exc:  # no longer the leader: the new one fires the rest
                log.warning("timers stopped: fenced", extra={"why": str(exc)})
                return fired, None
            except Exception as exc:  # one bad timer must not hold back the others
                log.warning(
                    "timer batch failed: firing it one by one",
                    extra={"timers": len(batch.ids), "error": f"{type(exc).__name__}: {exc}"[:200]},
                )
                for timer_id in batch.ids:
                    try:
                        fired += self._fire_one(timer_id)
                    except Fenced as exc:
                        log.warning("timers stopped: fenced", extra={"why": str(exc)})
                        return fired, None
                    except Exception:
                        log.exception("timer failed", extra={"timer": timer_id})
                return fired, self._earliest()
            fired += batch.fired
            seen += len(batch.ids)
            if len(batch.ids) < size or seen >= limit:
                return fired, batch.earliest

    def _fire_batch(self, now: datetime, size: int, batch: _Batch) -> None:
        """Fire up to ``size`` due timers in one transaction: the due rows selected and
        locked, their incidents read with one query, every timer marked fired in the
        commit of its posts; then the earliest still pending (one transaction, not 3)."""
        with self.store.transaction(urgent=True) as s:
            timers = list(
                s.scalars(
                    select(Timer)
                    .where(
                        Timer.fired_at.is_(None),
                        Timer.cancelled_at.is_(None),
                        Timer.due_at <= now,
                    )
                    .order_by(Timer.due_at, Timer.id)
                    .limit(size)
                    .with_for_update()
                )
            )
            batch.ids = [t.id for t in timers]  # kept for firing one by one if this fails
            if timers:
                fence = self.fence()
                if fence is not None:
                    fence.check(s)
                incident_ids = {t.incident_id for t in timers if t.incident_id is not None}
                # Held for the batch: the session's identity map keeps only what is
                # referenced, and s.get finds these there instead of reading each again.
                incidents = (
                    list(s.scalars(select(Incident).where(Incident.id.in_(incident_ids))))
                    if incident_ids
                    else []
                )
                batch.fired = sum(self._fire(s, timer) for timer in timers)
                del incidents
            batch.earliest = s.scalar(_EARLIEST)  # after the flush of what this batch planned

    def _fire_one(self, timer_id: int) -> int:
        with self.store.transaction(urgent=True) as s:
            fence = self.fence()
            if fence is not None:
                fence.check(s)
            timer = s.get(Timer, timer_id, with_for_update=True)
            return 0 if timer is None else self._fire(s, timer)

    def _fire(self, s: Session, timer: Timer) -> int:
        if timer.fired_at is not None or timer.cancelled_at is not None:
            return 0
        now = self.clock.now()
        lateness = now - timer.due_at
        late = late_text(lateness) if lateness > LATE_AFTER else None
        timer.fired_at = now
        if timer.kind in self.aftermath:  # fires whatever the incident's state, if any
            self.aftermath[timer.kind](s, timer, now, late)
        elif timer.incident_id is None:
            self.calendar.fire(s, timer, now, late)
        else:
            incident = s.get(Incident, timer.incident_id)
            if incident is None or not incident.is_open:
                return 0  # resolved meanwhile: nothing to do
            self.kinds.fire(s, timer, incident, now, late)
        log.info(
            "timer fired",
            extra={
                "key": timer.key,
                "kind": timer.kind,
                "late_s": round(lateness.total_seconds(), 1),
            },
        )
        return 1

    # ---- the scheduler (leader only) -------------------------------------------

    def plan_calendar(self) -> None:
        with self.store.transaction() as s:
            self.calendar.ensure(s, self.clock.now())

    async def start(self, tick_seconds: float = POLL.total_seconds()) -> None:
        await self.store.run(self._start_scheduler, tick_seconds)
        if self.listener is not None:
            self._listening = asyncio.create_task(self.listener.run(), name="timer plans")
        await self.fire_due()  # what came due while the bot was down, at once

    async def _planned_elsewhere(self, due: datetime) -> None:
        await self.store.run(self.wake.planned, due)  # moving the job writes its store

    def _start_scheduler(self, tick_seconds: float) -> None:
        logging.getLogger("apscheduler.scheduler").addFilter(_SKIPPED_POLL)  # once: a set
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
        self.wake.poll = timedelta(seconds=tick_seconds)
        self.wake.started(self.clock.now())
        self.wake.watch(self.store.sessions)

    def _move(self, due: datetime) -> None:
        """The scheduler job's next run, moved to ``due`` (on this process's clock: a
        driven clock's time is carried over to the real one the scheduler keeps)."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        at = datetime.now(UTC) + (due - self.clock.now())
        with contextlib.suppress(JobLookupError, SchedulerNotRunningError):
            scheduler.modify_job(JOB_ID, next_run_time=at)

    def next_wake(self) -> datetime | None:
        """When the scheduler next runs the firing job (None: not running)."""
        scheduler = self.scheduler
        job = scheduler.get_job(JOB_ID) if scheduler is not None else None
        return job.next_run_time if job is not None else None

    async def stop(self) -> None:
        if self._listening is not None:
            listening, self._listening = self._listening, None
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
        if self.wake.armed is not None:
            self.wake.stopped()
            self.wake.unwatch(self.store.sessions)
        if self.scheduler is not None:
            scheduler, self.scheduler = self.scheduler, None
            await self.store.run(scheduler.shutdown, wait=False)
        if self._running_key is not None:
            Running.remove(self._running_key)
            self._running_key = None
