"""A moment as a person writes it in chat: ``10m ago``, ``14:05`` (today, or yesterday
when that is still to come), ``2026-12-01 14:05`` or ISO 8601 (with or without an
offset); local times are in the configured time zone."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.domain.durations import parse_duration
from bot.domain.incident import InvalidInput

_AGO = re.compile(r"^(.+?)\s+ago$", re.IGNORECASE)
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_moment(text: str, *, now: datetime, tz: ZoneInfo) -> datetime:
    """An aware datetime at or before ``now``; InvalidInput naming the forms otherwise."""
    text = text.strip()
    ago = _AGO.match(text)
    if ago:
        try:
            return now - parse_duration(ago.group(1))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    clock = _CLOCK.match(text)
    if clock:
        local = now.astimezone(tz)
        at = local.replace(hour=int(clock.group(1)), minute=int(clock.group(2)), second=0)
        at = at.replace(microsecond=0)
        return at if at <= local else at - timedelta(days=1)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"not a time: {text[:40]!r} (use e.g. 10m ago, 14:05 or 2026-12-01 14:05)"
        ) from None
    at = at if at.tzinfo is not None else at.replace(tzinfo=tz)
    if at > now:
        raise InvalidInput(f"{text} is still to come")
    return at
