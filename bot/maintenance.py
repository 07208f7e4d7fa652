"""Maintenance windows (issue 16): ``/maintenance <duration> [reason]``,
``/maintenance end``, and the planned windows of the configuration.

While one lasts, an incident declared from alerts is announced as usual but held:
its ack chain and escalations are not planned; a durable ``release`` timer is planned
at the window's end instead (bot/timer_plan.py), which pages it then when it is
still open and unacknowledged — once, across restarts, as every timer fires. Ending
or extending a window moves the pending release timers with it. Incidents a person
declares are never held."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot import audit
from bot.clock import Clock
from bot.domain.incident import InvalidInput, check_text, time_text
from bot.domain.maintenance import LOOKAHEAD, Held, Window, held_at, planned, upcoming
from bot.messages import Destination
from bot.outbox import Poster
from bot.people import Actor
from bot.settings import Config
from bot.store import Store
from bot.store.models import Maintenance, Timer

RELEASE = "release"  # the timer kind (bot/timer_kinds.py fires it)
MAX_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class MaintenanceState:
    held: Held | None
    windows: tuple[Window, ...]  # those under way now
    next: Window | None


class MaintenanceWindows:
    def __init__(self, *, store: Store, config: Config, clock: Clock, poster: Poster) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.poster = poster

    # ---- reading -------------------------------------------------------------

    def windows(self, s: Session, now: datetime) -> list[Window]:
        """Every window that lasts at ``now`` or begins in the next ``LOOKAHEAD``."""
        horizon = now + LOOKAHEAD
        found = planned(self.config.maintenance, self.config.tz, now - MAX_WINDOW, horizon)
        rows = s.scalars(
            select(Maintenance).where(Maintenance.ends_at > now, Maintenance.starts_at < horizon)
        )
        found += [Window(r.starts_at, r.ends_at, r.reason, r.id) for r in rows]
        return found

    def held(self, s: Session, now: datetime) -> Held | None:
        """In maintenance at ``now``? (Inside the caller's transaction.)"""
        return held_at(self.windows(s, now), now)

    def state(self) -> MaintenanceState:
        now = self.clock.now()
        with self.store.read() as s:
            windows = self.windows(s, now)
        return MaintenanceState(
            held=held_at(windows, now),
            windows=tuple(w for w in windows if w.start <= now < w.end),
            next=upcoming(windows, now),
        )

    # ---- changing ------------------------------------------------------------

    def start(
        self, *, duration: timedelta, reason: str | None, by: Actor, source: str
    ) -> MaintenanceState:
        if not timedelta(minutes=1) <= duration <= MAX_WINDOW:
            raise InvalidInput("a maintenance window lasts between 1m and 7d")
        why = check_text(reason, "the reason", 200) if reason else "maintenance"
        now = self.clock.now()
        with self.store.transaction() as s:
            row = Maintenance(
                starts_at=now, ends_at=now + duration, reason=why, created_by=by.handle
            )
            s.add(row)
            s.flush()
            audit.join(s, now, "ok", f"maintenance until {row.ends_at.isoformat()}: {why}")
            held = self.held(s, now)
            assert held is not None
            self._move_releases(s, held.until)
            text = (
                f"🔧 Maintenance until {time_text(held.until, self.config.tz)} ({why}), "
                f"declared by @{by.handle}: incidents from alerts are announced, nobody is "
                "paged; at the end the on-call is paged for each one still open and "
                "unacknowledged. /maintenance end to stop it early."
            )
            self._announce(s, text, f"maintenance:{row.id}:start")
        return self.state()

    def end(self, *, by: Actor, source: str) -> MaintenanceState:
        """End every window declared from chat now (planned ones run their course)."""
        now = self.clock.now()
        with self.store.transaction() as s:
            rows = list(
                s.scalars(
                    select(Maintenance)
                    .where(Maintenance.starts_at <= now, Maintenance.ends_at > now)
                    .with_for_update()
                )
            )
            if not rows:
                held = self.held(s, now)
                if held is not None:
                    raise InvalidInput(
                        f"only planned maintenance is under way ({held.reason}), until "
                        f"{time_text(held.until, self.config.tz)}: change maintenance: in "
                        "the configuration to end it"
                    )
                raise InvalidInput("no maintenance is under way")
            for row in rows:
                row.ends_at, row.ended_by = now, by.handle
            s.flush()
            audit.join(s, now, "ok", f"maintenance ended ({len(rows)} window(s))")
            held = self.held(s, now)
            released = self._move_releases(s, held.until if held else now)
            text = f"🔧 Maintenance ended by @{by.handle}."
            if held is not None:
                text += (
                    f" Planned maintenance lasts until {time_text(held.until, self.config.tz)}"
                    f" ({held.reason})."
                )
            elif released:
                text += f" Paging now for {released} incident(s) it held, if still unacknowledged."
            self._announce(s, text, f"maintenance:{rows[0].id}:end")
        return self.state()

    def _move_releases(self, s: Session, until: datetime) -> int:
        """Every incident still held is released at ``until``; how many there are."""
        moved = s.execute(
            update(Timer)
            .where(
                Timer.kind == RELEASE,
                Timer.fired_at.is_(None),
                Timer.cancelled_at.is_(None),
            )
            .values(due_at=until)
        )
        return int(getattr(moved, "rowcount", 0) or 0)

    def _announce(self, s: Session, text: str, key: str) -> None:
        self.poster.post(s, None, Destination.incidents(), "text", {"text": text}, key)
