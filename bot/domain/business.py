"""The business calendar: working days (weekdays of ``business.days`` that are neither a
public holiday of the configured country/subdivision nor an explicit date) and working
hours, in the configured time zone. P3's "next business day" and the post-incident
review's slot are computed here; pure (no database, no clock).

Also the review's slot (:func:`review_slot`, the runbook's "within 24-48 hours" on a
business day) and the moments ``/pir`` accepts (:func:`review_time`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.domain.incident import InvalidInput

if TYPE_CHECKING:
    from bot.settings_aftermath import Business, Pir

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# No calendar is closed for longer: a search beyond it is a configuration without any
# business day ahead (every date listed as a holiday), said as such.
_HORIZON = 400
_END_OF_DAY = time(23, 59, 59)


class BusinessCalendar:
    """Working days and hours of ``business`` in ``tz``. Moments in, aware moments out
    (in UTC)."""

    def __init__(self, business: Business, tz: ZoneInfo) -> None:
        self.tz = tz
        self.days = frozenset(WEEKDAYS.index(d) for d in business.days)
        self.opens = business.opens
        self.closes = business.closes
        self.dates = frozenset(business.holidays.dates)
        self.country = business.holidays.country
        self.subdivision = business.holidays.subdivision
        self._public: Any = None  # the holidays package's calendar, built when first asked

    def holiday(self, day: date) -> str | None:
        """The holiday's name when ``day`` is one (an explicit date, or a public holiday)."""
        if day in self.dates:
            return "holiday"
        if self.country is None:
            return None
        if self._public is None:
            import holidays

            self._public = holidays.country_holidays(self.country, subdiv=self.subdivision)
        name = self._public.get(day)
        return str(name) if name else None

    def is_business_day(self, day: date) -> bool:
        return day.weekday() in self.days and self.holiday(day) is None

    def is_open(self, t: datetime) -> bool:
        """Inside working hours of a business day."""
        local = t.astimezone(self.tz)
        clock = local.time().replace(tzinfo=None)
        before_close = clock < self.closes or self.closes == _END_OF_DAY
        return self.is_business_day(local.date()) and self.opens <= clock and before_close

    def next_business_day(self, day: date) -> date:
        """``day`` itself when it is a business day, else the next one."""
        for offset in range(_HORIZON):
            candidate = day + timedelta(days=offset)
            if self.is_business_day(candidate):
                return candidate
        raise InvalidInput(f"no business day in the {_HORIZON} days from {day.isoformat()}")

    def at(self, day: date, clock: time) -> datetime:
        """``clock`` on ``day`` in the calendar's zone, as an aware UTC moment."""
        return datetime.combine(day, clock, tzinfo=self.tz).astimezone(UTC)

    def due(self, t: datetime, *, business_time: bool) -> datetime:
        """When something due at ``t`` falls due: the next opening for a severity counted
        in business time (P3's "next business day"), ``t`` itself otherwise. The one rule
        the timers (bot/timer_plan.py) and the posts' Next Update (bot/views.py) share."""
        return self.next_open(t) if business_time else t

    def next_open(self, t: datetime) -> datetime:
        """``t`` itself when it falls inside working time, else the next opening (the
        next business day's opening hour; today's when ``t`` is before it)."""
        if self.is_open(t):
            return t
        local = t.astimezone(self.tz)
        day = local.date()
        if local.time().replace(tzinfo=None) >= self.opens or not self.is_business_day(day):
            day += timedelta(days=1)
        return self.at(self.next_business_day(day), self.opens)


@dataclass(frozen=True)
class ReviewSlot:
    """When the review is proposed; ``outside_window``: no business day fell within the
    runbook's window after the resolution, so the slot is the first one after it."""

    at: datetime
    outside_window: bool


def review_slot(
    calendar: BusinessCalendar, pir: Pir, resolved_at: datetime, now: datetime | None = None
) -> ReviewSlot:
    """The first slot at ``pir.at`` on a business day at least ``pir.rest`` after the
    resolution (and after ``now``, asked late); outside the window when it is more than
    ``pir.within`` after the resolution."""
    earliest = resolved_at + pir.rest if now is None else max(resolved_at + pir.rest, now)
    day = calendar.next_business_day(earliest.astimezone(calendar.tz).date())
    slot = calendar.at(day, pir.time)
    if slot < earliest:
        slot = calendar.at(calendar.next_business_day(day + timedelta(days=1)), pir.time)
    return ReviewSlot(slot, outside_window=slot > resolved_at + pir.within)


def local_text(at: datetime, tz: ZoneInfo) -> str:
    """A moment as PIRA writes it (contract): ``YYYY-MM-DD HH:MM <zone>``, local time."""
    local = at.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or "")


_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
FORMS = "e.g. 14:00, thursday, tomorrow 10:00 or 2026-12-03 14:00"


def _clock(text: str | None, default: time) -> time:
    if text is None:
        return default
    m = _CLOCK.match(text)
    if m is None:
        raise InvalidInput(f"not a time of day: {text[:20]!r} (write HH:MM, e.g. 14:00)")
    return time(int(m.group(1)), int(m.group(2)))


def _weekday(word: str) -> int | None:
    word = word.lower()
    for i, name in enumerate(DAY_NAMES):
        if len(word) >= 3 and name.startswith(word):
            return i
    return None


def _past(at: datetime, now: datetime, tz: ZoneInfo) -> datetime:
    if at <= now:
        shown = local_text(at, tz)
        raise InvalidInput(f"{shown} is in the past: give a time still to come")
    return at.astimezone(UTC)


def review_time(text: str, *, now: datetime, tz: ZoneInfo, default: time) -> datetime:
    """A review's moment as a person writes it, in ``tz``: ``14:00`` (the next such
    time), ``thu``/``thursday`` [HH:MM], ``today``/``tomorrow`` [HH:MM], ``YYYY-MM-DD``
    [HH:MM] or ISO 8601 (``default``: the configured hour when none is written). Aware
    UTC; InvalidInput when it does not parse or is not after ``now``."""
    words = text.strip().split()
    if not words or len(words) > 2:
        raise InvalidInput(f"not a time: {text[:40]!r} ({FORMS})")
    local_now = now.astimezone(tz)
    today = local_now.date()
    head, clock_word = words[0].lower(), (words[1] if len(words) == 2 else None)
    if clock_word is None and _CLOCK.match(head):
        clock = _clock(head, default)
        at = datetime.combine(today, clock, tzinfo=tz)
        if at <= local_now:
            at = datetime.combine(today + timedelta(days=1), clock, tzinfo=tz)
        return at.astimezone(UTC)
    day: date
    weekday = _weekday(head)
    if head in ("today", "tomorrow"):
        day = today + timedelta(days=0 if head == "today" else 1)
    elif weekday is not None:
        clock = _clock(clock_word, default)
        day = today + timedelta(days=(weekday - today.weekday()) % 7)
        if datetime.combine(day, clock, tzinfo=tz) <= local_now:
            day += timedelta(days=7)  # that weekday's hour today is gone: next week's
    else:
        try:
            day = date.fromisoformat(head)
        except ValueError:
            if clock_word is not None or "t" not in head:
                raise InvalidInput(f"not a time: {text[:40]!r} ({FORMS})") from None
            try:
                at = datetime.fromisoformat(words[0])
            except ValueError:
                raise InvalidInput(f"not a time: {text[:40]!r} ({FORMS})") from None
            return _past(at if at.tzinfo else at.replace(tzinfo=tz), local_now, tz)
    return _past(datetime.combine(day, _clock(clock_word, default), tzinfo=tz), local_now, tz)
