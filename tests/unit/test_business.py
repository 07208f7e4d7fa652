"""The business calendar (bot/domain/business.py): working days and hours, explicit and
public holidays, the edges of working hours, DST in Europe/Berlin, the review's slot
and the moments /pir accepts. Pure: every moment is given."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain.business import BusinessCalendar, local_text, review_slot, review_time
from bot.domain.incident import InvalidInput
from bot.settings_aftermath import Business, Pir

BERLIN = ZoneInfo("Europe/Berlin")


def calendar(tz: ZoneInfo = BERLIN, **business: object) -> BusinessCalendar:
    return BusinessCalendar(Business.model_validate(business), tz)


def berlin(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN)


def test_weekends_are_not_business_days() -> None:
    cal = calendar()
    # 2026-12-04 is a Friday.
    assert [cal.is_business_day(date(2026, 12, d)) for d in range(4, 8)] == [
        True,
        False,
        False,
        True,
    ]
    six_days = calendar(days=["mon", "tue", "wed", "thu", "fri", "sat"])
    assert six_days.is_business_day(date(2026, 12, 5))
    assert not six_days.is_business_day(date(2026, 12, 6))


def test_explicit_dates_are_holidays() -> None:
    cal = calendar(holidays={"dates": ["2026-12-24"]})
    assert not cal.is_business_day(date(2026, 12, 24))  # a Thursday
    assert cal.is_business_day(date(2026, 12, 23))
    assert cal.next_open(berlin(2026, 12, 23, 18, 30)) == berlin(2026, 12, 25, 9, 0)
    # Christmas Day is not a holiday without a country.
    assert cal.holiday(date(2026, 12, 25)) is None


def test_country_and_subdivision_holidays() -> None:
    german = calendar(holidays={"country": "DE"})
    assert german.holiday(date(2026, 5, 25)) == "Pentecost Monday"  # Whit Monday
    assert not german.is_business_day(date(2026, 5, 25))
    assert not german.is_business_day(date(2026, 12, 25))
    assert german.is_business_day(date(2026, 1, 6))  # Epiphany: not in every state
    bavarian = calendar(holidays={"country": "DE", "subdivision": "BY"})
    assert not bavarian.is_business_day(date(2026, 1, 6))
    # Friday evening before Whit Monday: the next opening is Tuesday.
    assert german.next_open(berlin(2026, 5, 22, 18, 0)) == berlin(2026, 5, 26, 9, 0)
    assert calendar().next_open(berlin(2026, 5, 22, 18, 0)) == berlin(2026, 5, 25, 9, 0)


@pytest.mark.parametrize(
    ("moment", "opened"),
    [
        ((2026, 12, 1, 9, 0), (2026, 12, 1, 9, 0)),  # the opening itself: open
        ((2026, 12, 1, 8, 59), (2026, 12, 1, 9, 0)),  # before it: today's opening
        ((2026, 12, 1, 17, 59), (2026, 12, 1, 17, 59)),  # the last minute: open
        ((2026, 12, 1, 18, 0), (2026, 12, 2, 9, 0)),  # the closing: tomorrow's opening
        ((2026, 12, 4, 17, 0), (2026, 12, 4, 17, 0)),  # Friday afternoon
        ((2026, 12, 4, 18, 0), (2026, 12, 7, 9, 0)),  # Friday's close: Monday
        ((2026, 12, 5, 12, 0), (2026, 12, 7, 9, 0)),  # Saturday: Monday
        ((2026, 12, 7, 0, 0), (2026, 12, 7, 9, 0)),  # Monday midnight: that morning
    ],
)
def test_next_open_at_the_edges_of_working_hours(
    moment: tuple[int, ...], opened: tuple[int, ...]
) -> None:
    cal = calendar()
    assert cal.next_open(berlin(*moment)) == berlin(*opened)
    assert cal.is_open(berlin(*moment)) == (moment == opened)


def test_working_hours_are_local_time_not_utc() -> None:
    cal = calendar()
    # 08:30 UTC is 09:30 in Berlin in winter: open.
    assert cal.is_open(datetime(2026, 12, 1, 8, 30, tzinfo=UTC))
    # 17:30 UTC is 18:30 in Berlin: closed, next opening 08:00 UTC the next day.
    assert cal.next_open(datetime(2026, 12, 1, 17, 30, tzinfo=UTC)) == datetime(
        2026, 12, 2, 8, 0, tzinfo=UTC
    )


def test_dst_changes_in_berlin() -> None:
    cal = calendar()
    # Summer time starts on Sunday 2026-03-29: Monday opens at 09:00 CEST = 07:00 UTC.
    spring = cal.next_open(berlin(2026, 3, 27, 19, 0))
    assert spring == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert local_text(spring, BERLIN) == "2026-03-30 09:00 CEST"
    # It ends on Sunday 2026-10-25: Monday opens at 09:00 CET = 08:00 UTC.
    autumn = cal.next_open(berlin(2026, 10, 23, 20, 0))
    assert autumn == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)
    assert local_text(autumn, BERLIN) == "2026-10-26 09:00 CET"
    # A P3's day across the change: Friday 17:00 CEST + 1 day is inside no working
    # hours; the reminder's time is Monday's opening in CET.
    assert cal.next_open(berlin(2026, 10, 23, 17, 0) + timedelta(days=1)) == autumn


def test_working_hours_to_midnight() -> None:
    cal = calendar(hours="09:00-24:00")
    assert cal.is_open(berlin(2026, 12, 1, 23, 59, 59))
    assert cal.next_open(berlin(2026, 12, 1, 8, 0)) == berlin(2026, 12, 1, 9, 0)


def test_no_business_day_ahead_is_said() -> None:
    every_day = [(date(2026, 1, 1) + timedelta(days=d)).isoformat() for d in range(500)]
    cal = calendar(holidays={"dates": every_day})
    with pytest.raises(InvalidInput, match="no business day"):
        cal.next_open(berlin(2026, 1, 1, 12, 0))


def test_review_slot_in_the_window_and_after_it() -> None:
    cal, pir = calendar(tz=ZoneInfo("UTC")), Pir()
    utc = ZoneInfo("UTC")
    # Tuesday 22:00: Wednesday 14:00 is only 16 h later; Thursday 14:00 is 40 h later.
    slot = review_slot(cal, pir, datetime(2026, 12, 1, 22, 0, tzinfo=utc))
    assert (slot.at, slot.outside_window) == (datetime(2026, 12, 3, 14, 0, tzinfo=UTC), False)
    # Tuesday 10:00: Wednesday 14:00 is 28 h later.
    slot = review_slot(cal, pir, datetime(2026, 12, 1, 10, 0, tzinfo=utc))
    assert (slot.at, slot.outside_window) == (datetime(2026, 12, 2, 14, 0, tzinfo=UTC), False)
    # Friday 15:00: the window ends Sunday 15:00, no business day in it: Monday.
    slot = review_slot(cal, pir, datetime(2026, 12, 4, 15, 0, tzinfo=utc))
    assert (slot.at, slot.outside_window) == (datetime(2026, 12, 7, 14, 0, tzinfo=UTC), True)
    # Asked late (the Monday slot gone): the first one still to come.
    late = review_slot(
        cal, pir, datetime(2026, 12, 4, 15, 0, tzinfo=utc), datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
    )
    assert (late.at, late.outside_window) == (datetime(2026, 12, 8, 14, 0, tzinfo=UTC), True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16:00", (2026, 12, 1, 16, 0)),  # later today
        ("14:00", (2026, 12, 2, 14, 0)),  # gone today: tomorrow
        ("thu", (2026, 12, 3, 14, 0)),
        ("Thursday 10:30", (2026, 12, 3, 10, 30)),
        ("tue", (2026, 12, 8, 14, 0)),  # today's 14:00 is gone: next Tuesday
        ("tue 17:00", (2026, 12, 1, 17, 0)),  # today's 17:00 is still to come
        ("tomorrow 10:00", (2026, 12, 2, 10, 0)),
        ("tomorrow", (2026, 12, 2, 14, 0)),
        ("2026-12-03 15:00", (2026, 12, 3, 15, 0)),
        ("2026-12-03", (2026, 12, 3, 14, 0)),
        ("2026-12-03T16:00", (2026, 12, 3, 16, 0)),
    ],
)
def test_review_times(text: str, expected: tuple[int, ...]) -> None:
    now = berlin(2026, 12, 1, 15, 0)  # a Tuesday afternoon
    at = review_time(text, now=now, tz=BERLIN, default=time(14, 0))
    assert at == berlin(*expected)
    assert at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("2026-11-30 14:00", "2026-11-30 14:00 CET is in the past"),
        ("today 09:00", "is in the past"),
        ("someday", "not a time"),
        ("tomorrow 25:00", "not a time of day"),
        ("2026-02-30", "not a time"),
        ("thu 10:00 sharp", "not a time"),
    ],
)
def test_bad_review_times(text: str, error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        review_time(text, now=berlin(2026, 12, 1, 15, 0), tz=BERLIN, default=time(14, 0))
