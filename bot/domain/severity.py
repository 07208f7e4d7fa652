"""The severity scale P0–P3: the one definition every module uses. Pure."""

from __future__ import annotations

from typing import Literal, get_args

Severity = Literal["P0", "P1", "P2", "P3"]
# Most severe first: comparing two severities compares their places here.
SEVERITIES: tuple[Severity, ...] = get_args(Severity)


def is_severity(text: str) -> bool:
    return text in SEVERITIES


def normalize_severity(text: object) -> Severity | None:
    """``p1``, ``P1`` or `` p1 `` → ``"P1"``; anything else → None."""
    value = str(text).strip().upper()
    return next((s for s in SEVERITIES if s == value), None)
