"""The building blocks every configuration model shares: durations, severity keys,
the role names, the strict base model and the error a bad configuration raises.

Imported by :mod:`bot.settings_defaults`, :mod:`bot.settings_env` and
:mod:`bot.settings`; callers import the public names from :mod:`bot.settings`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from bot.domain.durations import format_duration, parse_duration
from bot.domain.severity import SEVERITIES

ROLE_NAMES = ("primary", "secondary", "team_lead", "engineering_manager", "cto")
PERMISSIONS = ("responder", "operator", "admin")


def _to_duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r} (write a unit: 30s, 15m, 2h, 1d, 1w)")
    return parse_duration(str(value))


Duration = Annotated[
    timedelta, BeforeValidator(_to_duration), PlainSerializer(format_duration, return_type=str)
]


def severity_key(value: Any) -> str:
    """``"p1"``, ``" P1 "`` → ``"P1"``; anything off the scale is a ``ValueError``."""
    text = str(value).strip().upper()
    if text not in SEVERITIES:
        raise ValueError(f"unknown severity {value!r} (use P0, P1, P2 or P3)")
    return text


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(Exception):
    """The configuration file cannot be used; ``errors`` lists each problem with its key path."""

    def __init__(self, source: str, errors: list[str], warnings: list[str] | None = None) -> None:
        super().__init__(f"{source}: {len(errors)} error(s)")
        self.source = source
        self.errors = errors
        self.warnings = warnings or []
