"""Maintenance windows in time (bot/domain/maintenance.py): planned occurrences of an
RRULE in the configured zone, and what "in maintenance until" means when windows
overlap or touch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from bot.domain.maintenance import Window, held_at, planned, upcoming
from bot.settings import Config
from bot.settings_alerts import MaintenanceWindow

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_weekly_window_keeps_its_local_time_across_the_clock_change() -> None:
    window = MaintenanceWindow.model_validate(
        {"start": "2027-03-20 22:00", "duration": "2h", "rrule": "FREQ=WEEKLY;BYDAY=SA"}
    )
    found = planned([window], BERLIN, utc(2027, 3, 15), utc(2027, 4, 5))
    # 22:00 in Berlin: 21:00 UTC in winter time, 20:00 UTC after 28 March.
    assert [w.start for w in found] == [
        utc(2027, 3, 20, 21),
        utc(2027, 3, 27, 21),
        utc(2027, 4, 3, 20),
    ]
    assert all(w.end - w.start == timedelta(hours=2) for w in found)


def test_an_occurrence_that_began_before_the_range_still_counts() -> None:
    window = MaintenanceWindow.model_validate(
        {"start": "2026-12-05 22:00", "duration": "3h", "rrule": "FREQ=DAILY"}
    )
    found = planned([window], ZoneInfo("UTC"), utc(2026, 12, 7, 0, 30), utc(2026, 12, 7, 1))
    assert [(w.start, w.end) for w in found] == [(utc(2026, 12, 6, 22), utc(2026, 12, 7, 1))]


def test_a_single_window_without_rrule() -> None:
    window = MaintenanceWindow.model_validate({"start": "2026-12-05 22:00", "duration": "2h"})
    assert planned([window], ZoneInfo("UTC"), utc(2026, 12, 5, 23), utc(2026, 12, 8)) == [
        Window(utc(2026, 12, 5, 22), utc(2026, 12, 6), "planned maintenance")
    ]
    assert planned([window], ZoneInfo("UTC"), utc(2026, 12, 6, 0), utc(2026, 12, 9)) == []


def test_windows_that_overlap_or_touch_hold_until_the_last_ends() -> None:
    windows = [
        Window(utc(2026, 12, 1, 10), utc(2026, 12, 1, 12), "db"),
        Window(utc(2026, 12, 1, 11), utc(2026, 12, 1, 13), "network"),
        Window(utc(2026, 12, 1, 13), utc(2026, 12, 1, 14), "k8s"),  # touches
        Window(utc(2026, 12, 1, 15), utc(2026, 12, 1, 16), "later"),  # a gap: not chained
    ]
    held = held_at(windows, utc(2026, 12, 1, 10, 30))
    assert held is not None
    assert held.until == utc(2026, 12, 1, 14)
    assert held.reason == "db; network; k8s"
    assert held_at(windows, utc(2026, 12, 1, 14)) is None  # the end is outside
    assert held_at(windows, utc(2026, 12, 1, 9, 59)) is None
    assert upcoming(windows, utc(2026, 12, 1, 14)) == windows[3]


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"start": "tomorrow", "duration": "2h"}, "YYYY-MM-DD HH:MM"),
        ({"start": "2026-12-05 22:00", "duration": "10s"}, "between 1m and 7d"),
        (
            {"start": "2026-12-05 22:00", "duration": "2h", "rrule": "FREQ=SOMETIMES"},
            "not an RRULE",
        ),
        ({"start": "2026-12-05 22:00"}, "duration"),
    ],
)
def test_bad_windows_are_refused_with_the_reason(window: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Config.model_validate({"maintenance": [window]})
    assert message in str(caught.value)


def test_alerts_settings() -> None:
    config = Config.model_validate(
        {
            "alerts": {
                "watchdog": {"silent_after": "5m"},
                "auto_resolve": ["SparkJobFailureRateHigh"],
            }
        }
    )
    assert config.alerts.watchdog is not None
    assert (config.alerts.watchdog.alertname, config.alerts.watchdog.silent_after) == (
        "Watchdog",
        timedelta(minutes=5),
    )
    assert config.alerts.auto_resolve == ("SparkJobFailureRateHigh",)
    assert config.alerts.auto_resolve_quiet == timedelta(minutes=5)
    assert Config.model_validate({"alerts": {"watchdog": None}}).alerts.watchdog is None
