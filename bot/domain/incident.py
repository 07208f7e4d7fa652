"""Incident vocabulary: severities, the status state machine, input limits. Pure."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo

from bot.domain.durations import humanize
from bot.domain.severity import Severity, normalize_severity

STATUSES = ("investigating", "mitigating", "monitoring", "resolved")
STATUS_LABELS = {
    "investigating": "🟡 Investigating",
    "mitigating": "🟠 Mitigating",
    "monitoring": "🔵 Monitoring",
    "resolved": "✅ Resolved",
}
MAX_TITLE = 200
MAX_TEXT = 2000


# C0 and C1 control characters (tab and newline kept), zero-width and direction overrides.
_CONTROL = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
# Lone surrogates: undecodable input bytes (surrogateescape) that no database can store.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean(text: str) -> str:
    """User text without control or direction-override characters (newlines kept);
    undecodable bytes become U+FFFD."""
    text = _SURROGATE.sub("\ufffd", text)
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


class InvalidInput(ValueError):
    """Bad input a user can cause; the message is shown to them as is."""


def parse_severity(text: str) -> Severity:
    value = normalize_severity(text)
    if value is None:
        raise InvalidInput(f"unknown severity {text!r}: use p0, p1, p2 or p3")
    return value


def parse_status(text: str) -> str:
    value = text.strip().lower()
    if value not in STATUSES:
        raise InvalidInput(f"unknown status {text!r}: use {', '.join(STATUSES)}")
    return value


def check_text(text: str, what: str, limit: int = MAX_TEXT) -> str:
    text = clean(text).strip()
    if not text:
        raise InvalidInput(f"{what} is empty")
    if len(text) > limit:
        raise InvalidInput(f"{what} is too long ({len(text)} characters, at most {limit})")
    return text


def duration_text(start: datetime, end: datetime) -> str:
    return humanize(end - start)


def time_text(when: datetime, tz: tzinfo) -> str:
    """A moment as posts write it (contract): ``YYYY-MM-DD HH:MM <zone>``, local time."""
    local = when.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or "")


def late_text(delta: timedelta) -> str:
    return f"late by {humanize(delta)}"
