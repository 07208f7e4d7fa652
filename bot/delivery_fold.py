"""Folds: chat pages to one person that pile up in their DM go out as one message.

Slack takes one post a second per channel, so an alert storm that opens 50 P0
incidents would page the person on call by 50 DMs, the last after 50 s (issue 13's
B3p). Instead, when a DM lane finds several pages waiting, it sends them together:
the first page of a storm goes alone and at once, and each following message carries
every page that arrived while the one before was being paced, at most ``MAX_FOLD``.
Each page keeps its own text and its Acknowledge button, labelled with its incident.

**Exactly once.** Only posts never attempted are folded, and the fold's members are
recorded with its attempt (``OutboxMessage.fold_of``: the key of its first post, in
the fenced transaction that records the attempt). A fold attempted before a restart
is sent again, or found in the channel by that key, with exactly the same members; a
post attempted alone is never folded afterwards. A fold the platform refuses for good
is split: its posts go again one by one, each looked for first by its own key (a long
fold Slack took in parts, then refused, may show a page twice: twice, never lost).

Only the chat pages of ``dm:`` lanes fold: a phone page (ntfy, PagerDuty, a webhook)
carries one incident's acknowledgement and goes alone, and pages are never edited, so
no edit can replace a fold with one of its posts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import select

from bot.messages import Button
from bot.render import Renderer
from bot.store import Store
from bot.store.models import OutboxMessage

FOLDABLE = frozenset({"page"})
MAX_FOLD = 10  # pages a message; their buttons stay within Slack's 25 an actions block
CHAT = frozenset({"slack", "telegram", "console"})
RULE = "────────"


def foldable(row: OutboxMessage) -> bool:
    body = row.body
    return (
        row.platform in CHAT
        and row.destination.startswith("dm:")
        and body.get("template") in FOLDABLE
        and not body.get("edit_of")
        and body.get("file") is None
    )


def fresh(row: OutboxMessage, now: datetime) -> bool:
    """Never attempted, in no fold, due, and a page of a DM."""
    return (
        row.attempted_at is None
        and row.fold_of is None
        and row.next_attempt_at <= now
        and foldable(row)
    )


def gather(rows: Sequence[OutboxMessage], start: int, now: datetime) -> list[OutboxMessage]:
    """The posts that go in the message of ``rows[start]`` (a lane's pending posts in
    order): itself, and when it is a fresh page, the fresh pages right after it."""
    group = [rows[start]]
    if not fresh(rows[start], now):
        return group
    for row in rows[start + 1 :]:
        if len(group) >= MAX_FOLD or not fresh(row, now):
            break
        group.append(row)
    return group


def members(store: Store, row: OutboxMessage) -> list[OutboxMessage]:
    """The pending posts of the fold ``row`` was attempted in (``row`` alone if none)."""
    with store.read() as s:
        found = s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.status == "pending")
            .where(OutboxMessage.platform == row.platform)
            .where(OutboxMessage.destination == row.destination)
            .where(OutboxMessage.fold_of == row.fold_of)
            .order_by(OutboxMessage.id)
        )
        return list(found) or [row]


def text(renderer: Renderer, platform: str, rows: Sequence[OutboxMessage]) -> str:
    """The fold's message: a line saying how many pages, then each page as it would
    have been posted alone."""
    numbers = ", ".join(f"#{r.body['data'].get('number', '?')}" for r in rows)
    head = renderer.render(platform, "text", {"text": f"🔔 {len(rows)} pages: {numbers}"})
    pages = [renderer.render(platform, r.body["template"], r.body["data"]) for r in rows]
    return f"\n\n{RULE}\n\n".join([head, *pages])


def buttons(rows: Sequence[OutboxMessage]) -> tuple[Button, ...]:
    """Every page's buttons, each label followed by its incident (``Acknowledge #12``)."""
    out: list[Button] = []
    for row in rows:
        number = row.body["data"].get("number")
        for raw in row.body.get("buttons", []):
            button = Button.from_json(raw)
            out.append(replace(button, label=f"{button.label} #{number}") if number else button)
    return tuple(out)


def incident(rows: Sequence[OutboxMessage]) -> int | None:
    """The incident of the message: the posts' own when they share one, else none."""
    ids = {r.incident_id for r in rows}
    return ids.pop() if len(ids) == 1 else None
