"""Slack wire formats, no I/O: Block Kit messages, splitting at the limit, and the text
of slash commands as Slack sends it (``should_escape`` on)."""

from __future__ import annotations

import re
from typing import Any

from bot.messages import Button

# Slack's limit for a section block's text; longer posts become several messages.
LIMIT = 3000
MAX_BLOCKS = 50
POST_EVENT = "pira_post"  # message metadata event_type carrying the outbox key


def split_message(text: str, limit: int = LIMIT) -> list[str]:
    """Parts of at most ``limit`` characters, cut on line boundaries (a single line longer
    than the limit is cut where it must be); the order is kept."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current: str | None = None
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                parts.append(current)
            current = None
            parts.append(line[:limit])
            line = line[limit:]
        if current is None:
            current = line
        elif len(current) + 1 + len(line) <= limit:
            current = f"{current}\n{line}"
        else:
            parts.append(current)
            current = line
    if current:
        parts.append(current)
    return [p for p in parts if p.strip()] or [text[:limit]]


def truncate(text: str, limit: int = LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def button_element(index: int, button: Button) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        # Unique per message; the command travels in ``value``.
        "action_id": f"pira:{index}",
        "text": {"type": "plain_text", "text": button.label[:75], "emoji": True},
        "value": button.command[:2000],
    }
    if button.style in ("primary", "danger"):
        element["style"] = button.style
    return element


def blocks(text: str, buttons: tuple[Button, ...] = ()) -> list[dict[str, Any]]:
    """Sections of mrkdwn (already escaped by the renderer) plus an actions block."""
    out: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": part}}
        for part in split_message(text or " ")
    ][: MAX_BLOCKS - 1]
    if buttons:
        out.append(
            {
                "type": "actions",
                "block_id": "pira-actions",
                "elements": [button_element(i, b) for i, b in enumerate(buttons[:25])],
            }
        )
    return out


def post_metadata(key: str, part: int) -> dict[str, Any]:
    return {"event_type": POST_EVENT, "event_payload": {"key": key, "part": part}}


def metadata_key(message: dict[str, Any]) -> tuple[str, int] | None:
    """(outbox key, part) of a message PIRA posted, from its metadata."""
    meta = message.get("metadata") or {}
    if meta.get("event_type") != POST_EVENT:
        return None
    payload = meta.get("event_payload") or {}
    key = payload.get("key")
    if not isinstance(key, str):
        return None
    try:
        return key, int(payload.get("part", 0))
    except (TypeError, ValueError):
        return None


_MARKUP = re.compile(r"<([^<>]*)>")


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def command_text(text: str) -> str:
    """A slash command's text as typed. Slack (``should_escape``) sends ``&``/``<``/``>``
    escaped and mentions as markup: user mentions stay ``<@U…>`` (the router reads them),
    channels become ``#name``, links their URL; everything else is unescaped, so the
    renderer escapes it once on the way out."""
    out: list[str] = []
    pos = 0
    for m in _MARKUP.finditer(text):
        out.append(_unescape(text[pos : m.start()]))
        inner = m.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            out.append(f"<{target}>")
        elif target.startswith("#"):
            out.append("#" + (label or target[1:]))
        elif target.startswith("!"):
            out.append("@" + (label or target[1:]).lstrip("@"))
        else:
            out.append(_unescape(label or target))
        pos = m.end()
    out.append(_unescape(text[pos:]))
    return "".join(out)
