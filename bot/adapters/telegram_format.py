"""Shaping what goes to Telegram: long texts cut into messages within the Bot API's
length limit, and buttons laid out as inline keyboard rows."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from telegram import InlineKeyboardButton

LIMIT = 4096

_OPEN_TAG = re.compile(r"<[^>]*$|&[#\w]*$")


def split_text(text: str, limit: int = LIMIT) -> list[str]:
    """Cut a message into parts of at most ``limit`` characters at line boundaries,
    order kept. A single longer line is cut at a space, never inside an HTML tag or
    entity (tags of our templates never span lines, so whole lines are always valid)."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            cut = line.rfind(" ", 0, limit)
            if cut <= 0:
                cut = limit
            head = line[:cut]
            dangling = _OPEN_TAG.search(head)
            if dangling is not None and dangling.start() > 0:
                cut = dangling.start()
                head = line[:cut]
            if current:
                parts.append(current)
                current = ""
            parts.append(head)
            line = line[cut:].lstrip(" ")
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current.strip():
        parts.append(current)
    return [p for p in parts if p.strip()]


def keyboard_rows(buttons: Sequence[tuple[str, str]], per_row: int = 3) -> list[list[Any]]:
    """(label, callback_data) pairs in rows of ``per_row``."""
    rows: list[list[Any]] = []
    for i in range(0, len(buttons), per_row):
        rows.append(
            [InlineKeyboardButton(lbl, callback_data=d) for lbl, d in buttons[i : i + per_row]]
        )
    return rows
