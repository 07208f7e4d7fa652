"""Rotation math across a daylight-saving change, and the iCalendar export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from bot.calendar import export_rotation
from bot.domain.rotation import RotationPlan
from bot.settings import Config

# Shifts, DST and the .ics export: every moment is given explicitly.
pytestmark = pytest.mark.clock

BERLIN = ZoneInfo("Europe/Berlin")


def plan(start: str = "2027-03-22") -> RotationPlan:
    return RotationPlan(
        members=("alice", "bob", "carol"),
        every=timedelta(days=7),
        handoff="mon 09:00",
        start=start,
        tz=BERLIN,
    )


def test_handoff_stays_at_local_time_across_dst() -> None:
    p = plan()  # Monday 2027-03-22; DST starts Sunday 2027-03-28 in Berlin
    before = datetime(2027, 3, 29, 7, 59, tzinfo=UTC)  # 08:59 CET... now CEST: 09:59?
    first = p.at(datetime(2027, 3, 22, 8, 0, tzinfo=UTC))  # 09:00 CET
    assert first.primary == "alice" and first.secondary == "bob"
    assert first.ends == datetime(2027, 3, 29, 9, 0, tzinfo=BERLIN)
    assert first.ends.astimezone(UTC) == datetime(2027, 3, 29, 7, 0, tzinfo=UTC)  # CEST
    assert p.at(datetime(2027, 3, 29, 6, 59, tzinfo=UTC)).primary == "alice"
    assert p.at(datetime(2027, 3, 29, 7, 0, tzinfo=UTC)).primary == "bob"
    assert p.at(before).primary == "bob"
    # And back in autumn: 09:00 CET again.
    autumn = p.at(datetime(2027, 11, 1, 8, 0, tzinfo=UTC))
    assert autumn.starts == datetime(2027, 11, 1, 9, 0, tzinfo=BERLIN)
    assert autumn.starts.astimezone(UTC).hour == 8


def test_start_moves_to_the_handoff_weekday_and_wraps() -> None:
    p = plan("2027-03-24")  # a Wednesday → first handoff Monday 2027-03-29
    shift = p.at(datetime(2027, 3, 29, 7, 0, tzinfo=UTC))
    assert shift.primary == "alice"
    assert p.at(datetime(2027, 4, 5, 7, 0, tzinfo=UTC)).primary == "bob"
    assert p.at(datetime(2027, 4, 19, 7, 0, tzinfo=UTC)).primary == "alice"  # wrapped
    assert p.at(datetime(2027, 3, 28, 12, 0, tzinfo=UTC)).primary == "carol"  # before start


def test_ics_export_opens_with_the_right_shifts(tmp_path: Path) -> None:
    config = Config.model_validate(
        {
            "timezone": "Europe/Berlin",
            "oncall": {
                "rotation": {
                    "members": ["alice", "bob"],
                    "handoff": "mon 09:00",
                    "start": "2027-03-22",
                }
            },
            "people": {"alice": {"name": "Alice"}},
        }
    )
    out = tmp_path / "rotation.ics"
    count = export_rotation(
        config, span=timedelta(weeks=3), out=out, start=datetime(2027, 3, 22, 8, 0, tzinfo=UTC)
    )
    cal = Calendar.from_ical(out.read_bytes())
    events = cal.walk("VEVENT")
    assert count == len(events) == 3
    starts = [e.decoded("dtstart").astimezone(UTC) for e in events]
    assert starts == [
        datetime(2027, 3, 22, 8, 0, tzinfo=UTC),
        datetime(2027, 3, 29, 7, 0, tzinfo=UTC),  # after the DST change
        datetime(2027, 4, 5, 7, 0, tzinfo=UTC),
    ]
    assert [str(e["summary"]) for e in events] == [
        "On call: Alice (primary), bob (secondary)",
        "On call: bob (primary), alice (secondary)",
        "On call: Alice (primary), bob (secondary)",
    ]
