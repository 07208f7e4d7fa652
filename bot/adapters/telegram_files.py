"""Files posted on Telegram: ``sendPhoto`` for a PNG or JPEG, ``sendDocument`` for
anything else, with the post's text as the caption when it fits Telegram's caption
limit; a longer text goes first as an ordinary message (split as usual), then the file
with a short caption naming it.

Exactly once as for texts (bot/adapters/telegram_send.py): each message goes through
``ChatSender.send_one`` (the chat's lock, its rate-limit slot, ``admitted`` before the
first request of the post), and an answer lost on the way back is settled by a probe:
``editMessageCaption`` with exactly the caption and keyboard sent answers "message is
not modified" on the message that holds them. The text of a two-message post, once
out, is remembered per outbox key in this process, so a retry sends only the file.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Awaitable, Callable

from telegram import InlineKeyboardMarkup, InputFile, ReplyParameters
from telegram import Message as PtbMessage
from telegram.constants import ParseMode

from bot.adapters.telegram_send import ChatSender, Sent, _Once
from bot.outbox import Attachment

CAPTION_LIMIT = 1024  # Telegram's, counted on the text as shown (after the HTML)
PHOTO_TYPES = frozenset({"image/png", "image/jpeg"})
_TAGS = re.compile(r"<[^>]+>")


def shown_length(text: str) -> int:
    """Length of an HTML text as Telegram counts it: tags out, entities decoded, in
    UTF-16 code units."""
    return len(html.unescape(_TAGS.sub("", text)).encode("utf-16-le")) // 2


def short_caption(file: Attachment) -> str:
    return f"📎 {html.escape(file.name[:200], quote=False)}"


class FileSender:
    """Posts with a file, through the adapter's :class:`ChatSender`."""

    def __init__(self, sender: ChatSender) -> None:
        self.sender = sender
        self._texts: dict[str, tuple[int, ...]] = {}  # outbox key → its text's message ids

    async def post(
        self,
        chat_id: int,
        text: str,
        file: Attachment | None,
        *,
        markup: InlineKeyboardMarkup | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
        key: str | None = None,
        max_wait: float = 3.0,
        admitted: Callable[[], Awaitable[None]] | None = None,
    ) -> Sent:
        """The file with ``text`` as its caption, or ``text`` then the file (see the module
        docstring). The keyboard goes with the first message. No file: ``text`` alone
        (``ChatSender.send``)."""
        if file is None:
            return await self.sender.send(
                chat_id,
                text,
                markup=markup,
                thread_id=thread_id,
                reply_to=reply_to,
                key=key,
                max_wait=max_wait,
                admitted=admitted,
            )
        once = _Once(admitted)
        texts: tuple[int, ...] = ()
        caption, keys = text, markup
        if shown_length(text) > CAPTION_LIMIT or not text.strip():
            caption = short_caption(file)
            texts = self._texts.get(key, ()) if key else ()
            if not texts and text.strip():
                sent = await self.sender.send(
                    chat_id,
                    text,
                    markup=markup,
                    thread_id=thread_id,
                    reply_to=reply_to,
                    key=f"{key}#text" if key else None,
                    max_wait=max_wait,
                    admitted=once,
                )
                texts = sent.message_ids
                if key:
                    self._texts[key] = texts
            keys = None if texts else markup
        photo = file.mime in PHOTO_TYPES
        request = functools.partial(
            self._send_file, chat_id, file, caption, keys, thread_id, reply_to, photo
        )
        mid = await self.sender.send_one(
            chat_id,
            request,
            functools.partial(self._caption_to, chat_id, caption, keys),
            token=f"{key}#file" if key else None,
            max_wait=max_wait,
            admitted=once,
            what="sendPhoto" if photo else "sendDocument",
        )
        if key:
            self._texts.pop(key, None)
        return Sent(chat_id, (*texts, mid), thread_id)

    async def _send_file(
        self,
        chat_id: int,
        file: Attachment,
        caption: str,
        markup: InlineKeyboardMarkup | None,
        thread_id: int | None,
        reply_to: int | None,
        photo: bool,
    ) -> PtbMessage:
        timeout = self.sender.send_timeout
        upload = InputFile(file.content, filename=file.name)
        reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        send = self.sender.bot.send_photo if photo else self.sender.bot.send_document
        return await send(
            chat_id,
            upload,
            caption=caption,
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
            message_thread_id=thread_id,
            reply_parameters=reply,
            read_timeout=timeout,
            write_timeout=timeout,
        )

    async def _caption_to(
        self, chat_id: int, caption: str, markup: InlineKeyboardMarkup | None, message_id: int
    ) -> None:
        """The probe: "message is not modified" on the message holding exactly this."""
        timeout = self.sender.send_timeout
        await self.sender.bot.edit_message_caption(
            chat_id=chat_id,
            message_id=message_id,
            caption=caption,
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
            read_timeout=timeout,
            write_timeout=timeout,
        )


__all__ = ["CAPTION_LIMIT", "FileSender", "shown_length"]
