"""Durations as the configuration and the chat write them: 30s, 15m, 2h, 1d, 1w."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)\s*([smhdw])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[smhdw]\s*)+$")
# Nothing PIRA times (an override, an escalation, a silence) runs longer than a year;
# the bound also keeps absurd numbers (9999999999999999999999h) out of date arithmetic.
MAX_DURATION = timedelta(days=366)


def parse_duration(text: str, *, limit: timedelta = MAX_DURATION) -> timedelta:
    """Parse ``30s``, ``15m``, ``2h``, ``1d``, ``1w`` or a sum such as ``1h30m``.

    Raises ValueError with a short message on anything else (no bare numbers:
    ``30`` is ambiguous) and on a duration longer than ``limit``.
    """
    if not isinstance(text, str) or len(text) > 40 or not _WHOLE.match(text.lower()):
        shown = text if not isinstance(text, str) or len(text) <= 40 else text[:40] + "…"
        raise ValueError(f"not a duration: {shown!r} (use e.g. 30s, 15m, 2h, 1d, 1w)")
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(text.lower()))
    if seconds > limit.total_seconds():
        raise ValueError(f"{text.strip()} is too long: at most {format_duration(limit)}")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest exact form: ``1h``, ``1h30m``, ``45s``, ``0m``."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0m"
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def humanize(delta: timedelta) -> str:
    """A reader's duration for posts: ``2h 05m``, ``14 min``, ``40 s``, ``3d 4h``."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"
