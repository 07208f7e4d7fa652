"""The configuration of what PIRA does with alerts beyond declaring incidents (issue 16):
the dead-man's switch (``alerts.watchdog``), auto-resolution per alert
(``alerts.auto_resolve``, ``alerts.auto_resolve_quiet``) and planned maintenance
windows (``maintenance:``, an optional RRULE each)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field, field_validator

from bot.settings_fields import Duration, Strict

_START = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}$")


class Watchdog(Strict):
    """Alertmanager's always-firing alert (deploy/prometheus/rules.yaml): its
    notifications never open incidents; when none has come for ``silent_after`` (a
    durable timer re-armed by each one), PIRA declares "Monitoring is blind"."""

    alertname: str = "Watchdog"
    silent_after: Duration = timedelta(minutes=10)

    @field_validator("silent_after")
    @classmethod
    def _silent(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1):
            raise ValueError("silent_after must be at least 1s (e.g. 10m)")
        return v


class Alerts(Strict):
    # None (``watchdog: null``): Watchdog notifications are alerts like any other.
    watchdog: Watchdog | None = Watchdog()
    # Alert names whose incident is resolved by PIRA once all its alerts resolved,
    # nobody acknowledged it, and nothing fired again for ``auto_resolve_quiet``.
    auto_resolve: tuple[str, ...] = ()
    auto_resolve_quiet: Duration = timedelta(minutes=5)

    @field_validator("auto_resolve", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        if isinstance(v, str):
            return (v,)
        return v


class MaintenanceWindow(Strict):
    """A planned window: from ``start`` (in the configured time zone) for
    ``duration``, repeated by ``rrule`` (RFC 5545, e.g. ``FREQ=WEEKLY;BYDAY=SA``)."""

    start: datetime
    duration: Duration
    reason: str = Field(default="planned maintenance", max_length=200)
    rrule: str | None = None

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, v: Any) -> Any:
        if isinstance(v, datetime):
            return v.replace(tzinfo=None)
        text = str(v).strip()
        if not _START.match(text):
            raise ValueError(f"write start as YYYY-MM-DD HH:MM (local time), not {v!r}")
        return datetime.fromisoformat(text.replace(" ", "T"))

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= v <= timedelta(days=7):
            raise ValueError("a maintenance window lasts between 1m and 7d")
        return v

    @field_validator("rrule")
    @classmethod
    def _rrule(cls, v: str | None) -> str | None:
        if v is None:
            return None
        from dateutil.rrule import rrulestr

        text = v.strip().removeprefix("RRULE:")
        try:
            rrulestr(text, dtstart=datetime(2026, 1, 1))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not an RRULE ({exc}); e.g. FREQ=WEEKLY;BYDAY=SA") from None
        return text
