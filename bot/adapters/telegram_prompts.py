"""Buttons that ask for text first (``Button.prompt``), the Telegram way.

Telegram has no modal: a click is answered with a bot message carrying ``ForceReply``,
and the person's *reply* to that message is the text. The command to run is written in
the prompt message itself (``✍️ /update #3 — What's new on #3? …``) and read back from
``reply_to_message`` when the answer arrives, so nothing is kept between the click and
the answer: it works across restarts and replicas. Only messages sent by the bot count
(the adapter checks ``reply_to_message.from_user.id``): a person writing the same text
cannot make the bot run anything, and the command always runs as the replier, with the
replier's roles.
"""

from __future__ import annotations

import html

from telegram import ForceReply

MARKER = "✍️"
SEPARATOR = " — "
PLACEHOLDER_LIMIT = 64  # input_field_placeholder: 1-64 characters
PROMPTED = "p:"  # callback_data prefix of a button that asks for text first


def short(prompt: str) -> str:
    """The placeholder shown in the input field: the prompt without its parenthesis."""
    head = prompt.split(" (", 1)[0].strip() or prompt.strip()
    if len(head) > PLACEHOLDER_LIMIT:
        head = head[: PLACEHOLDER_LIMIT - 1].rstrip() + "…"
    return head or "Reply"


def force_reply(prompt: str) -> ForceReply:
    return ForceReply(selective=True, input_field_placeholder=short(prompt))


def prompt_html(command: str, prompt: str, mention: str) -> str:
    """The prompt message (Telegram HTML). ``mention`` is already markup: with
    ``selective``, the reply field opens only for the person mentioned."""
    return (
        f"{MARKER} <code>{html.escape(command, quote=False)}</code>{SEPARATOR}"
        f"{html.escape(prompt, quote=False)}\n{mention}, reply to this message."
    )


def prompted_command(text: str) -> str | None:
    """The command a prompt message (as Telegram shows its text) asks text for."""
    first = text.split("\n", 1)[0]
    if not first.startswith(MARKER + " "):
        return None
    command, sep, _prompt = first[len(MARKER) + 1 :].partition(SEPARATOR)
    command = command.strip()
    if not sep or not command.startswith("/") or len(command) < 2:
        return None
    return command


def prompt_of(text: str) -> str:
    """The question of a prompt message, to ask it again."""
    first = text.split("\n", 1)[0]
    return first.partition(SEPARATOR)[2].strip()
