"""Weekly (or any period) on-call rotation math. Pure: no database, no clock.

Shift boundaries are computed in local wall-clock time of the configured time
zone, so "mon 09:00" stays 09:00 across a daylight-saving change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Shift:
    index: int
    primary: str
    secondary: str | None
    starts: datetime
    ends: datetime


class RotationPlan:
    def __init__(
        self, *, members: tuple[str, ...], every: timedelta, handoff: str, start: str, tz: ZoneInfo
    ) -> None:
        if not members:
            raise ValueError("a rotation needs members")
        if every <= timedelta(0):
            raise ValueError("a rotation period must be positive")
        self.members = members
        self.every = every
        self.tz = tz
        day, _, hhmm = handoff.partition(" ")
        hour, minute = (int(x) for x in hhmm.split(":"))
        first = date.fromisoformat(start)
        first += timedelta(days=(_DAYS.index(day[:3]) - first.weekday()) % 7)
        # Naive local wall-clock time of the first handoff.
        self._origin = datetime.combine(first, time(hour, minute))

    def _boundary(self, index: int) -> datetime:
        return (self._origin + index * self.every).replace(tzinfo=self.tz)

    def index_at(self, when: datetime) -> int:
        local = when.astimezone(self.tz).replace(tzinfo=None)
        index = int((local - self._origin) // self.every)
        # Correct for the hour a DST change adds or removes around a boundary.
        while self._boundary(index) > when:
            index -= 1
        while self._boundary(index + 1) <= when:
            index += 1
        return index

    def shift(self, index: int) -> Shift:
        n = len(self.members)
        return Shift(
            index=index,
            primary=self.members[index % n],
            secondary=self.members[(index + 1) % n] if n > 1 else None,
            starts=self._boundary(index),
            ends=self._boundary(index + 1),
        )

    def at(self, when: datetime) -> Shift:
        return self.shift(self.index_at(when))

    def next_handoff(self, after: datetime) -> datetime:
        return self.at(after).ends

    def shifts(self, start: datetime, count: int) -> list[Shift]:
        first = self.index_at(start)
        return [self.shift(first + i) for i in range(count)]
