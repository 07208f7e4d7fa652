"""Moments as people write them in chat (bot/domain/moments.py), on a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain.incident import InvalidInput
from bot.domain.moments import parse_moment

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)  # 10:30 in Berlin
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m ago", NOW - timedelta(minutes=10)),
        ("1h30m ago", NOW - timedelta(hours=1, minutes=30)),
        ("10:05", datetime(2026, 12, 1, 10, 5, tzinfo=BERLIN)),  # earlier today
        ("23:50", datetime(2026, 11, 30, 23, 50, tzinfo=BERLIN)),  # still to come: yesterday
        ("2026-12-01 08:00", datetime(2026, 12, 1, 8, 0, tzinfo=BERLIN)),
        ("2026-12-01T08:00:00+00:00", datetime(2026, 12, 1, 8, 0, tzinfo=UTC)),
    ],
)
def test_a_moment_in_the_forms_people_write(text: str, expected: datetime) -> None:
    assert parse_moment(text, now=NOW, tz=BERLIN) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("tomorrow", "not a time"),
        ("10 ago", "not a duration"),
        ("2026-12-02 08:00", "still to come"),
        ("25:00", "not a time"),
        ("99999999999999999h ago", "too long"),
    ],
)
def test_anything_else_is_a_short_error(text: str, error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        parse_moment(text, now=NOW, tz=BERLIN)
