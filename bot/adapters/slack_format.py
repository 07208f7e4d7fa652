"""Slack wire formats, no I/O: Block Kit messages, splitting at the limit, and the text
of slash commands as Slack sends it (``should_escape`` on)."""

from __future__ import annotations

import json
import re
from typing import Any

from bot.messages import Button

# Slack's limit for a section block's text; longer posts become several messages.
LIMIT = 3000
MAX_BLOCKS = 50
POST_EVENT = "pira_post"  # message metadata event_type carrying the outbox key
# A button that asks for text first: its action_id starts so, its value is JSON.
ASK_ACTION = "pira:ask:"
PROMPT_CALLBACK = "pira_prompt"  # callback_id of the modal asking for that text
PROMPT_BLOCK = "pira_text"  # block_id / action_id of the modal's text input
PROMPT_ACTION = "text"
METADATA_LIMIT = 3000  # Slack's limit for a view's private_metadata


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
    if button.prompt:
        # The click opens a modal: the prompt must travel with the button (value ≤ 2000).
        element["action_id"] = f"{ASK_ACTION}{index}"
        element["value"] = json.dumps(
            {"command": button.command[:1000], "prompt": button.prompt[:900]},
            ensure_ascii=False,
        )
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


def asked(value: str) -> tuple[str, str] | None:
    """(command, prompt) of a prompting button's value; None if it is not one."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    command, prompt = data.get("command"), data.get("prompt")
    if not isinstance(command, str) or not command or not isinstance(prompt, str):
        return None
    return command, prompt


def prompt_view(label: str, prompt: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """The modal asking for a prompting button's text; ``metadata`` comes back on submit."""
    meta = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
    if len(meta) > METADATA_LIMIT:
        raise ValueError("private_metadata over Slack's limit")
    return {
        "type": "modal",
        "callback_id": PROMPT_CALLBACK,
        "title": {"type": "plain_text", "text": _unescape(label)[:24] or "PIRA"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": meta,
        "blocks": [
            {
                "type": "input",
                "block_id": PROMPT_BLOCK,
                "label": {"type": "plain_text", "text": prompt[:2000] or label},
                "element": {
                    "type": "plain_text_input",
                    "action_id": PROMPT_ACTION,
                    "multiline": True,
                    "max_length": 2900,
                },
            }
        ],
    }


def submitted(view: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(metadata, text) of a submitted prompt modal; text stripped, "" when empty."""
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        meta = {}
    values = ((view.get("state") or {}).get("values") or {}).get(PROMPT_BLOCK) or {}
    text = (values.get(PROMPT_ACTION) or {}).get("value") or ""
    return (meta if isinstance(meta, dict) else {}), str(text).strip()


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
