"""When the scheduler wakes: at the next due timer, not on the next poll.

The APScheduler job that fires timers (bot/timers.py) keeps an interval trigger,
``poll`` seconds: a safety net. On top of it, the job's next run time is moved to the
earliest due timer whenever that is sooner:

- after every commit that planned a timer in this process (a session event on the
  store: the planning transaction says nothing, nothing can forget it),
- on PostgreSQL, when another replica commits one (bot/timer_notify.py: NOTIFY), and
- at the end of every firing pass (the earliest pending row).

``armed`` is the run time this process last gave the scheduler (or the poll's next
run): a timer due later than it changes nothing, so planning a thousand timers costs
no scheduler write at all when one is due sooner.

A wake-up asked for while a firing pass runs (APScheduler would skip a second run of
the job) sets ``again``: the pass goes on until nothing more is due.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from bot.store.models import Timer

_DUE = "pira_earliest_timer"
RETRY = timedelta(milliseconds=200)
# A timer due this soon after a pass is waited for by the firing thread itself: under a
# steady stream of timers, one scheduler round trip (its job store's writes) per timer
# would cost more than the wait.
HOLD = timedelta(milliseconds=100)


class Wake:
    def __init__(self, *, move: Callable[[datetime], None], poll: timedelta) -> None:
        self.move = move  # moves the scheduler job's next run time (any thread)
        self.poll = poll
        self.armed: datetime | None = None  # None: no scheduler (nothing to move)
        self.firing = False
        self.again = False
        self._lock = threading.Lock()

    # ---- the scheduler's side ----------------------------------------------------------

    def started(self, now: datetime) -> None:
        with self._lock:
            self.armed = now + self.poll

    def stopped(self) -> None:
        with self._lock:
            self.armed = None

    def abort_pass(self) -> None:
        """A pass that failed (the database went away): the next poll tries again."""
        with self._lock:
            self.firing = self.again = False

    def begin_pass(self) -> None:
        with self._lock:
            self.firing, self.again = True, False

    def end_pass(self, now: datetime, earliest: datetime | None, progressed: bool) -> float | None:
        """After a firing pass: the seconds to wait before firing again in the same run
        (0: at once — a timer was planned during the pass, or more came due; a timer
        due within ``HOLD``: wait for it here rather than go through the scheduler);
        None: the run ends, the scheduler armed for the earliest pending timer when
        that is before the next poll."""
        with self._lock:
            due_now = earliest is not None and earliest <= now
            if self.again or (progressed and due_now):
                self.again = False
                return 0.0
            # Only while the stream flows (this pass fired some): a driven clock, which
            # does not move while the thread waits, never makes it wait twice.
            if progressed and earliest is not None and not due_now and earliest - now <= HOLD:
                return (earliest - now).total_seconds()
            self.firing = False
            if self.armed is None:
                return None
            nominal = now + self.poll  # what the interval trigger does next
            target = None
            if earliest is not None and earliest < nominal:
                # A timer still due after a pass that fired nothing (it failed) is
                # tried again shortly, never in a tight loop.
                target = max(earliest, now + RETRY) if due_now else earliest
            self.armed = target or nominal
        if target is not None:
            self.move(target)
        return None

    # ---- the planners' side ------------------------------------------------------------

    def planned(self, due: datetime) -> None:
        """A committed transaction planned a timer due at ``due``."""
        with self._lock:
            if self.armed is None:
                return
            if self.firing:
                self.again = True  # the pass looks at the pending timers again first
                return
            if due >= self.armed:
                return
            self.armed = due
        self.move(due)

    def watch(self, sessions: Any) -> None:
        """Listen to a store's sessions (its sessionmaker): after a commit that added or
        moved a timer, :meth:`planned` with the earliest due time."""
        event.listen(sessions, "after_flush", _collect)
        event.listen(sessions, "after_commit", self._committed)
        event.listen(sessions, "after_rollback", _forget)

    def unwatch(self, sessions: Any) -> None:
        event.remove(sessions, "after_flush", _collect)
        event.remove(sessions, "after_commit", self._committed)
        event.remove(sessions, "after_rollback", _forget)

    def _committed(self, session: Session) -> None:
        due = session.info.pop(_DUE, None)
        if due is not None:
            self.planned(due)


def earliest_planned(session: Session) -> datetime | None:
    """In a flush: the earliest due time among the timers it adds or moves."""
    dues = [t.due_at for t in session.new if isinstance(t, Timer)]
    dues += [
        t.due_at
        for t in session.dirty
        if isinstance(t, Timer) and t.fired_at is None and t.cancelled_at is None
    ]
    return min(dues) if dues else None


def _collect(session: Session, _context: Any) -> None:
    earliest = earliest_planned(session)
    if earliest is not None:
        known = session.info.get(_DUE)
        session.info[_DUE] = earliest if known is None else min(known, earliest)


def _forget(session: Session) -> None:
    session.info.pop(_DUE, None)
