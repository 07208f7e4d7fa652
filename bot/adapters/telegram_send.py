"""Sending to the Telegram Bot API: one send at a time per chat, rate limited
(``telegram_limits``), split (``telegram_format``), errors mapped to the outbox's
retry policy (``telegram_errors``), and the "answered after the client gave up" problem.

Exactly once, honestly. The Bot API has no idempotency key and no way for a bot to
read a chat's history, so after a ``sendMessage`` whose answer never arrived (read
timeout, connection dropped after the request was written) the bot cannot simply
ask "did it arrive?". What it can do without side effects on the *right* message:
``editMessageText`` with exactly the text and keyboard it tried to send. Telegram
answers "message is not modified" when that message id holds exactly this content,
"message to edit not found" when there is no message, "message can't be edited"
for someone else's message. Message ids grow by one per message in a chat, so the
lost message, if it exists, is just above the highest id this process knew in that
chat before the send. Every send to one chat is serialised under a per-chat lock,
so no other post of ours can sit in that range (see ``ChatSender.send``).

Residual risks (documented in the report):
- a request Telegram processes *after* the probe (stuck in its pipeline) is resent
  and shows twice;
- after a restart the highest known id of a chat is unknown until the bot sends or
  receives there, so an uncertain *first* send is resent (logged as a possible
  duplicate);
- a message of ours with different content above that id (sent by another process,
  or a command reply sent before a restart) would be overwritten by the probe;
  logged as an error; the window is a handful of ids and needs an uncertain send.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telegram import Bot, ForceReply, InlineKeyboardMarkup, LinkPreviewOptions, ReplyParameters
from telegram import Message as PtbMessage
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError

from bot.adapters.telegram_errors import (
    as_delivery_error,
    is_not_modified,
    not_sent,
    retry_after_seconds,
)
from bot.adapters.telegram_format import keyboard_rows, split_text
from bot.adapters.telegram_limits import Limits, RateLimiter

# Importable from here as before (bot/adapters/telegram.py and tests use them).
__all__ = [
    "ChatSender",
    "Limits",
    "RateLimiter",
    "Sent",
    "as_delivery_error",
    "keyboard_rows",
    "split_text",
]

log = logging.getLogger("pira.telegram")

PROBE_WINDOW = 30  # ids above the known frontier that may hold the lost message
PROBE_MISSES = 3  # consecutive "not found" ids: past the end of the chat

Request = Callable[[], Awaitable[PtbMessage]]  # sends one message
Probe = Callable[[int], Awaitable[None]]  # edits message id N to exactly what was sent


@dataclass(frozen=True)
class Sent:
    chat_id: int
    message_ids: tuple[int, ...]
    thread_id: int | None

    def ref(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "message_id": self.message_ids[0],
            "message_ids": list(self.message_ids),
            "thread_id": self.thread_id,
        }


class _Once:
    """``Outbound.admitted``, awaited before the first ``sendMessage`` of a post only."""

    def __init__(self, hook: Callable[[], Awaitable[None]] | None) -> None:
        self.hook = hook

    async def __call__(self) -> None:
        hook, self.hook = self.hook, None
        if hook is not None:
            await hook()


class ChatSender:
    """All sends to Telegram go through here: one at a time per chat, rate limited,
    split, and verified by probing when an answer was lost."""

    def __init__(self, bot: Bot, limiter: RateLimiter, *, send_timeout: float) -> None:
        self.bot = bot
        self.limiter = limiter
        self.send_timeout = send_timeout
        self._locks: dict[int, asyncio.Lock] = {}
        self._frontier: dict[int, int] = {}  # highest message id seen per chat
        self._progress: dict[str, list[int]] = {}  # outbox key → ids of parts already out
        self._uncertain: dict[str, int] = {}  # key#part → frontier before the lost send

    def saw(self, chat_id: int, message_id: int) -> None:
        """Any message id of a chat (ours, a user's, a topic's) moves its frontier."""
        if message_id > self._frontier.get(chat_id, 0):
            self._frontier[chat_id] = message_id

    def _lock(self, chat_id: int) -> asyncio.Lock:
        return self._locks.setdefault(chat_id, asyncio.Lock())

    async def send(
        self,
        chat_id: int,
        text: str,
        *,
        markup: InlineKeyboardMarkup | ForceReply | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
        key: str | None = None,
        max_wait: float = 3.0,
        admitted: Callable[[], Awaitable[None]] | None = None,
    ) -> Sent:
        """Send ``text`` (split if long; the keyboard on the first part). With ``key``
        (an outbox row), parts already sent by an earlier attempt are not sent again.
        ``admitted`` (``Outbound.admitted``) is awaited once, when the rate limiter has
        admitted the first ``sendMessage`` of this call, right before it; what it raises
        (``Fenced``) propagates and nothing is sent."""
        parts = split_text(text)
        done = self._progress.setdefault(key, []) if key else []
        once = _Once(admitted)
        for index in range(len(done), len(parts)):
            part, keys = parts[index], markup if index == 0 else None
            mid = await self.send_one(
                chat_id,
                functools.partial(self._send_text, chat_id, part, keys, thread_id, reply_to),
                functools.partial(self._edit_to, chat_id, part, keys),
                token=f"{key}#{index}" if key else None,
                max_wait=max_wait,
                admitted=once,
                what="sendMessage",
            )
            done.append(mid)
        if key:
            self._progress.pop(key, None)
        return Sent(chat_id, tuple(done), thread_id)

    async def send_one(
        self,
        chat_id: int,
        request: Request,
        probe: Probe,
        *,
        token: str | None,
        max_wait: float,
        admitted: Callable[[], Awaitable[None]],
        what: str,
    ) -> int:
        """One message (``request``: a text, a document, a photo), under the chat's lock in
        its rate-limit slot; ``admitted`` is awaited right before it. An answer lost on
        the way back is settled with ``probe`` (see the module docstring): it edits
        message id N to exactly what ``request`` sends and raises as Telegram answers.
        ``token`` (the outbox key and part) remembers a failed probe for the next try."""
        async with self._lock(chat_id):
            if token is not None and token in self._uncertain:
                found = await self._probe(chat_id, self._uncertain[token], probe, token)
                del self._uncertain[token]
                if found is not None:
                    return found
            async with self.limiter.slot(chat_id, max_wait) as slot:
                await admitted()  # the first send of the post: recorded, or Fenced
                before = self._frontier.get(chat_id)
                slot.go()
                try:
                    message = await request()
                except TelegramError as exc:
                    if isinstance(exc, RetryAfter):  # the chat waits; the post retries after it
                        self.limiter.backoff(chat_id, retry_after_seconds(exc))
                    uncertain = isinstance(exc, NetworkError) and not isinstance(exc, BadRequest)
                    if uncertain and not not_sent(exc):
                        return await self._after_lost_answer(
                            chat_id, before, probe, token, exc, what
                        )
                    raise as_delivery_error(exc, what) from exc
                self.saw(chat_id, message.message_id)
                return message.message_id

    async def _send_text(
        self,
        chat_id: int,
        text: str,
        markup: InlineKeyboardMarkup | ForceReply | None,
        thread_id: int | None,
        reply_to: int | None,
    ) -> PtbMessage:
        return await self.bot.send_message(
            chat_id,
            text,
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
            message_thread_id=thread_id,
            reply_parameters=(
                ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
            ),
            link_preview_options=LinkPreviewOptions(is_disabled=True),
            read_timeout=self.send_timeout,
            write_timeout=self.send_timeout,
        )

    async def _edit_to(
        self,
        chat_id: int,
        text: str,
        markup: InlineKeyboardMarkup | ForceReply | None,
        message_id: int,
    ) -> None:
        """The probe of a text: a ForceReply is not part of the sent message (and cannot
        be edited in), the message holds the text alone."""
        keyboard = markup if isinstance(markup, InlineKeyboardMarkup) else None
        await self._edit_text(chat_id, message_id, text, keyboard)

    async def _after_lost_answer(
        self,
        chat_id: int,
        before: int | None,
        probe: Probe,
        token: str | None,
        exc: TelegramError,
        what: str,
    ) -> int:
        """The request went out but no answer came back: find out before resending."""
        if before is None:
            log.warning(
                "telegram send uncertain; no known message id to verify against, "
                "resending may duplicate",
                extra={"chat_id": chat_id, "key": token, "error": type(exc).__name__},
            )
            raise as_delivery_error(exc, f"{what} (uncertain)") from exc
        try:
            found = await self._probe(chat_id, before, probe, token)
        except TelegramError as probe_exc:
            if token is not None:
                self._uncertain[token] = before  # probe again before the next send
            raise as_delivery_error(probe_exc, f"{what} (uncertain, probe failed)") from exc
        if found is not None:
            log.info(
                "telegram send answered late; it had arrived, not resent",
                extra={"chat_id": chat_id, "key": token, "message_id": found},
            )
            return found
        log.info(
            "telegram send lost before Telegram took it; will resend",
            extra={"chat_id": chat_id, "key": token},
        )
        raise as_delivery_error(exc, f"{what} (not delivered)") from exc

    async def _probe(
        self, chat_id: int, before: int, probe: Probe, token: str | None
    ) -> int | None:
        """The id of the message holding exactly what was sent just above ``before``, or
        None when there is none (see the module docstring). Raises on API trouble."""
        misses = 0
        for mid in range(before + 1, before + 1 + PROBE_WINDOW):
            try:
                await probe(mid)
            except BadRequest as exc:
                said = str(exc).lower()
                if "not modified" in said:
                    self.saw(chat_id, mid)
                    return mid
                if "not found" in said:
                    misses += 1
                    if misses >= PROBE_MISSES:
                        return None
                    continue
                misses = 0  # someone else's message, a service message: keep looking
                continue
            # The edit changed a message: one of ours we did not know about. It now
            # shows this post, so the post is delivered; its old content is lost.
            log.error(
                "telegram probe overwrote an unknown message of the bot",
                extra={"chat_id": chat_id, "message_id": mid, "key": token},
            )
            self.saw(chat_id, mid)
            return mid
        return None

    async def edit(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        markup: InlineKeyboardMarkup | None,
        *,
        max_wait: float = 3.0,
    ) -> None:
        """Replace a message's text and keyboard. Idempotent: "not modified" is success,
        so a timed-out edit is simply retried."""
        parts = split_text(text)
        body = parts[0] if len(parts) == 1 else parts[0].rstrip() + "\n…"
        async with self._lock(chat_id), self.limiter.slot(chat_id, max_wait) as slot:
            slot.go()
            try:
                await self._edit_text(chat_id, message_id, body, markup)
            except TelegramError as exc:
                if is_not_modified(exc):
                    return
                if isinstance(exc, RetryAfter):
                    self.limiter.backoff(chat_id, retry_after_seconds(exc))
                raise as_delivery_error(exc, "editMessageText") from exc

    async def _edit_text(
        self, chat_id: int, message_id: int, text: str, markup: InlineKeyboardMarkup | None
    ) -> None:
        """``editMessageText`` as both the probe and :meth:`edit` send it."""
        await self.bot.edit_message_text(
            text,
            chat_id=chat_id,
            message_id=message_id,
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
            link_preview_options=LinkPreviewOptions(is_disabled=True),
            read_timeout=self.send_timeout,
            write_timeout=self.send_timeout,
        )
