"""Maintenance windows in time: the planned ones of the configuration (an RRULE each,
in the configured time zone) and those declared from chat, and what "in maintenance"
means at a moment: covered by a window, until the end of the chain of windows that
overlap or touch it (one window ending as the next begins holds throughout)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from bot.settings_alerts import MaintenanceWindow

# How far ahead "the next planned window" is looked for.
LOOKAHEAD = timedelta(days=60)


@dataclass(frozen=True)
class Window:
    start: datetime  # UTC
    end: datetime
    reason: str
    id: int | None = None  # a window declared from chat; None: planned


@dataclass(frozen=True)
class Held:
    """In maintenance at a moment: until when (the chain's end) and why."""

    until: datetime
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "; ".join(dict.fromkeys(self.reasons))


def planned(
    windows: Sequence[MaintenanceWindow], tz: ZoneInfo, start: datetime, end: datetime
) -> list[Window]:
    """The configured windows' occurrences that overlap [start, end), by start."""
    found: list[Window] = []
    for w in windows:
        first = w.start.replace(tzinfo=tz)
        if w.rrule is None:
            starts = [first]
        else:
            rule = rrulestr(w.rrule, dtstart=first)
            # Occurrences that began up to one duration before ``start`` still overlap it.
            lo = (start - w.duration).astimezone(tz)
            starts = list(rule.between(lo, end.astimezone(tz), inc=True))
        for at in starts:
            begin = at.astimezone(UTC)
            if begin < end and begin + w.duration > start:
                found.append(Window(begin, begin + w.duration, w.reason))
    return sorted(found, key=lambda x: (x.start, x.end))


def held_at(windows: Iterable[Window], now: datetime) -> Held | None:
    """Whether ``now`` is in maintenance, and until when."""
    pool = sorted(windows, key=lambda x: x.start)
    covering = [w for w in pool if w.start <= now < w.end]
    if not covering:
        return None
    until = max(w.end for w in covering)
    reasons = [w.reason for w in covering]
    grew = True
    while grew:
        grew = False
        for w in pool:
            if w.start <= until < w.end:
                until, grew = w.end, True
                reasons.append(w.reason)
    return Held(until, tuple(reasons))


def upcoming(windows: Iterable[Window], now: datetime) -> Window | None:
    """The next window that has not begun."""
    later = [w for w in windows if w.start > now]
    return min(later, key=lambda x: x.start, default=None)
