"""The on-call rotation as iCalendar, so it can be "shared in calendar" (runbook, Preparation)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from icalendar import Calendar, Event

from bot.domain.rotation import RotationPlan
from bot.settings import Config


def rotation_calendar(config: Config, *, start: datetime, span: timedelta) -> Calendar:
    rotation = config.oncall.rotation
    if rotation is None:
        raise ValueError("no rotation configured")
    plan = RotationPlan(
        members=rotation.members,
        every=rotation.every,
        handoff=rotation.handoff,
        start=rotation.start,
        tz=config.tz,
    )
    cal = Calendar()
    cal.add("prodid", "-//PIRA//on-call rotation//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", "PIRA on-call")
    count = max(1, math.ceil(span / plan.every))
    stamp = datetime.now(UTC)
    for shift in plan.shifts(start, count):
        event = Event()
        event.add("uid", f"pira-oncall-{shift.index}@pira")
        event.add("dtstamp", stamp)
        event.add("dtstart", shift.starts)
        event.add("dtend", shift.ends)
        person = config.people.get(shift.primary)
        summary = f"On call: {(person.name if person else '') or shift.primary} (primary)"
        if shift.secondary:
            summary += f", {shift.secondary} (secondary)"
        event.add("summary", summary)
        event.add("description", f"primary={shift.primary}; secondary={shift.secondary or ''}")
        cal.add_component(event)
    return cal


def export_rotation(
    config: Config, *, span: timedelta, out: Path, start: datetime | None = None
) -> int:
    cal = rotation_calendar(config, start=start or datetime.now(UTC), span=span)
    out.write_bytes(cal.to_ical())
    return len(cal.walk("VEVENT"))
