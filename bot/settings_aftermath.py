"""The configuration of the runbook's aftermath: the business calendar (working days,
hours, public and explicit holidays: P3's "next business day" and the post-incident
review's slot) and the review itself (``pir``). The rules between their keys (a
subdivision needs its country, ``pir.rest`` < ``pir.within``) are checked with the
other cross-field rules in :mod:`bot.settings_check`."""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from typing import Any

from pydantic import field_validator

from bot.settings_fields import Duration, Strict

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-4]):([0-5]\d)$")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def clock_time(text: str, what: str) -> time:
    m = _CLOCK.match(str(text).strip())
    if m is None:
        raise ValueError(f"write {what} as HH:MM, e.g. 14:00")
    return time(int(m.group(1)), int(m.group(2)))


class Holidays(Strict):
    # Public holidays of a country (the ``holidays`` package: an ISO 3166 code such as
    # DE, GB, US), optionally of one of its subdivisions (e.g. BY), plus explicit dates.
    country: str | None = None
    subdivision: str | None = None
    dates: tuple[date, ...] = ()

    @field_validator("country")
    @classmethod
    def _country(cls, v: str | None) -> str | None:
        if v is None:
            return None
        import holidays

        code = v.strip().upper()
        if code not in holidays.list_supported_countries():
            raise ValueError(f"unknown country {v!r} (an ISO 3166 code such as DE, GB or US)")
        return code

    @field_validator("dates", mode="before")
    @classmethod
    def _dates(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            out = []
            for d in v:
                try:
                    out.append(d if isinstance(d, date) else date.fromisoformat(str(d)))
                except ValueError:
                    raise ValueError(f"write each date as YYYY-MM-DD, not {d!r}") from None
            return tuple(out)
        return v


class Business(Strict):
    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    hours: str = "09:00-18:00"
    holidays: Holidays = Holidays()

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            days = tuple(str(d).strip().lower()[:3] for d in v)
            bad = [d for d in days if d not in WEEKDAYS]
            if bad or not days:
                raise ValueError(f"working days are written {', '.join(WEEKDAYS)}")
            return days
        return v

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        m = _HOURS.match(v.strip())
        if m is None:
            raise ValueError('write working hours as "HH:MM-HH:MM", e.g. "09:00-18:00"')
        if (int(m.group(1)), int(m.group(2))) >= (int(m.group(3)), int(m.group(4))):
            raise ValueError("working hours must end after they start")
        return v.strip()

    @property
    def opens(self) -> time:
        m = _HOURS.match(self.hours)
        assert m is not None
        return time(int(m.group(1)), int(m.group(2)))

    @property
    def closes(self) -> time:
        m = _HOURS.match(self.hours)
        assert m is not None
        hour, minute = int(m.group(3)), int(m.group(4))
        return time(23, 59, 59) if hour == 24 else time(hour, minute)


class Pir(Strict):
    # The review's hour on a business day, and the runbook's "within 24-48 hours": the
    # slot is at least ``rest`` and at most ``within`` after the resolution.
    at: str = "14:00"
    within: Duration = timedelta(hours=48)
    rest: Duration = timedelta(hours=18)
    length: Duration = timedelta(hours=1)
    remind_before: Duration = timedelta(hours=1)

    @field_validator("at")
    @classmethod
    def _at(cls, v: str) -> str:
        clock_time(v, "pir.at")
        return v.strip()

    @property
    def time(self) -> time:
        return clock_time(self.at, "pir.at")
