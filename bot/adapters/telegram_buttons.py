"""Telegram's inline buttons: what a click carries, and the questions buttons ask.

``callback_data`` holds the command itself (``/ack #12``, ``p:/update #12`` for a
button that asks for text first). A command longer than Telegram's 64 bytes is sent
as a code (a hash of it), and every code and question is kept in the room store, so
a click still works after a restart.
"""

from __future__ import annotations

import hashlib

from telegram import InlineKeyboardMarkup

from bot.adapters.telegram_prompts import PROMPTED
from bot.adapters.telegram_send import keyboard_rows
from bot.messages import Button
from bot.rooms import Rooms

CALLBACK_LIMIT = 64  # bytes of callback_data


def _code(data: str) -> str:
    return "h:" + hashlib.sha256(data.encode()).hexdigest()[:32]


def _data(button: Button) -> str:
    """What a click carries: the command, marked ``p:`` when it asks for text first."""
    return f"{PROMPTED}{button.command}" if button.prompt else button.command


class Buttons:
    def __init__(self, rooms: Rooms) -> None:
        self.rooms = rooms
        self._codes: dict[str, str] = {}  # code → data, this process's memory
        self._prompts: dict[str, str] = {}  # command → its button's question
        self._kept: set[str] = set()  # codes already in the room store

    async def markup(self, buttons: tuple[Button, ...]) -> InlineKeyboardMarkup | None:
        if not buttons:
            return None
        rows = []
        for b in buttons:
            rows.append((b.label, await self._encode(b)))
        return InlineKeyboardMarkup(keyboard_rows(rows))

    async def _encode(self, button: Button) -> str:
        data = _data(button)
        if button.prompt:
            self._prompts[button.command] = button.prompt
        code = _code(data)
        if code not in self._kept and (button.prompt or len(data.encode()) > CALLBACK_LIMIT):
            await self.rooms.keep_button(code, data, button.prompt)
            self._kept.add(code)
        if len(data.encode()) <= CALLBACK_LIMIT:
            return data
        self._codes[code] = data
        return code

    async def decode(self, data: str) -> str | None:
        """The command a click carries (``p:`` kept), or None for a code unknown."""
        if data.startswith("/") or data.startswith(PROMPTED + "/"):
            return data
        if not data.startswith("h:"):
            return None
        if data in self._codes:
            return self._codes[data]
        kept = await self.rooms.button(data)
        return None if kept is None else kept[0]

    async def prompt_for(self, command: str) -> str:
        """The question of the button that runs ``command``: from this process's
        memory, else from the room store, else a generic one."""
        if command in self._prompts:
            return self._prompts[command]
        kept = await self.rooms.button(_code(PROMPTED + command))
        if kept is not None and kept[1]:
            return kept[1]
        return f"Text for {command}?"
