"""Answers to a person on Telegram, sent now (not through the outbox): a command's reply,
a button's toast, and the question a button asks (a ForceReply message)."""

from __future__ import annotations

import asyncio
import html
import logging
import re

from telegram import ForceReply, InlineKeyboardMarkup, User

from bot.adapters.telegram_buttons import Buttons
from bot.adapters.telegram_prompts import force_reply, prompt_html
from bot.adapters.telegram_send import ChatSender
from bot.messages import Reply
from bot.outbox import DeliveryError
from bot.render import Renderer

log = logging.getLogger("pira.telegram")

_TAGS = re.compile(r"<[^>]+>")


class Answers:
    def __init__(
        self, *, sender: ChatSender, renderer: Renderer, buttons: Buttons, reply_wait: float
    ) -> None:
        self.sender = sender
        self.renderer = renderer
        self.buttons = buttons
        self.reply_wait = reply_wait

    def toast(self, reply: Reply) -> str:
        text = self.renderer.render("telegram", reply.template, reply.data)
        plain = html.unescape(_TAGS.sub("", text)).strip().split("\n", 1)[0]
        return plain[:190] + ("…" if len(plain) > 190 else "")

    async def reply(
        self, chat_id: int, thread: int | None, reply_to: int | None, reply: Reply
    ) -> None:
        text = self.renderer.render("telegram", reply.template, reply.data)
        if not text.strip():
            return
        await self.send_now(
            chat_id, thread, reply_to, text, await self.buttons.markup(reply.buttons)
        )

    async def send_now(
        self,
        chat_id: int,
        thread: int | None,
        reply_to: int | None,
        text: str,
        markup: InlineKeyboardMarkup | ForceReply | None,
    ) -> None:
        """Send an answer to a person now (not through the outbox), waiting out short
        rate limits."""
        for _attempt in range(3):
            try:
                await self.sender.send(
                    chat_id,
                    text,
                    markup=markup,
                    thread_id=thread,
                    reply_to=reply_to,
                    max_wait=self.reply_wait,
                )
                return
            except DeliveryError as exc:
                if exc.permanent or exc.retry_after is None or exc.retry_after > self.reply_wait:
                    log.warning(
                        "telegram reply not sent", extra={"chat_id": chat_id, "error": str(exc)}
                    )
                    return
                await asyncio.sleep(exc.retry_after)

    async def ask(
        self,
        chat_id: int,
        thread: int | None,
        reply_to: int | None,
        command: str,
        prompt: str,
        mention: str,
    ) -> None:
        """Ask for the text of ``command`` with a ForceReply message (see
        telegram_prompts.py); the answer comes back as a reply to it."""
        text = prompt_html(command, prompt, mention)
        await self.send_now(chat_id, thread, reply_to, text, force_reply(prompt))

    @staticmethod
    def mention(user: User) -> str:
        name = user.full_name or user.username or str(user.id)
        return f'<a href="tg://user?id={user.id}">{html.escape(name)}</a>'
